"""The actor-critic layer shared by A2C and PPO: a value network and GAE(λ) advantages that
bootstrap at time limits and skip Gymnasium's autoreset steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .advantages import generalized_advantages
from .agent import ACTIVATIONS, OnPolicyAgent
from .policies import mlp

__all__ = ["ActorCritic"]


class ActorCritic(OnPolicyAgent):
    """An :class:`OnPolicyAgent` with a critic V(s) (an MLP, even for a linear policy: an
    LQR's value is quadratic) trained on the λ-returns, in the same optimizer as the policy.

    Args:
        env, **options: as for :class:`OnPolicyAgent`.
        gae_lambda: the GAE parameter (1: Monte Carlo returns, 0: one-step TD).
        ent_coef: the weight of the entropy bonus.
        vf_coef: the weight of the value loss.
        max_grad_norm: the gradient norm is clipped to this (None: no clip).
        normalize_advantage: standardize the advantages (per minibatch in PPO).

    Raises:
        ValueError: gae_lambda outside [0, 1], vf_coef < 0 or max_grad_norm <= 0 (checked
            before the environments are built), and as :class:`OnPolicyAgent`.
    """

    def __init__(
        self,
        env: Any,
        *,
        gae_lambda: float = 0.95,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = True,
        **options: Any,
    ) -> None:
        if not 0.0 <= gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must lie in [0, 1], got {gae_lambda}")
        if not vf_coef >= 0:
            raise ValueError(f"vf_coef must be at least 0, got {vf_coef}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive (or None: no clip), got "
                             f"{max_grad_norm}")  # fmt: skip
        super().__init__(env, **options)
        self.config.update(gae_lambda=gae_lambda, ent_coef=ent_coef, vf_coef=vf_coef,
                           max_grad_norm=max_grad_norm,
                           normalize_advantage=normalize_advantage)  # fmt: skip
        self.gae_lambda, self.ent_coef, self.vf_coef = gae_lambda, ent_coef, vf_coef
        self.max_grad_norm, self.normalize_advantage = max_grad_norm, normalize_advantage
        obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        with torch.random.fork_rng():
            torch.manual_seed(1 if self.seed is None else self.seed + 1)
            gain = 1.0 if self.config["ortho_init"] else None
            activation = ACTIVATIONS[self.config["activation"]]
            self.value = mlp([obs_dim, *self.config["hidden"], 1], activation,
                             output_gain=gain).to(self.dtype)  # fmt: skip
        self.networks["value"] = self.value
        self._build_optimizer()

    def flatten(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The rollout's real transitions as flat tensors: obs, actions, old_log_prob,
        old_values, advantages (GAE), returns (advantages + values)."""
        obs, actions = batch["obs"], batch["actions"]
        steps, envs = batch["rewards"].shape
        with torch.no_grad():
            values = self.value(obs).squeeze(-1)  # (steps, envs)
            next_value = self.value(self.policy_input(self._obs)).squeeze(-1)
            old_log_prob = self.policy.log_prob(obs, actions)
        # Gymnasium 1.x: at a truncated step the returned observation is the true final one,
        # and the agent sees it as the next step's observation: its value bootstraps
        final_values = torch.cat([values[1:], next_value[None]])
        gae = generalized_advantages(
            batch["rewards"], values, batch["terminated"], batch["truncated"], next_value,
            final_values=final_values, reset_step=batch["reset_step"], gamma=self.gamma,
            gae_lambda=self.gae_lambda,
        )  # fmt: skip
        valid = gae.valid.reshape(-1)
        return {
            "obs": obs.reshape(steps * envs, -1)[valid],
            "actions": actions.reshape(steps * envs, -1)[valid],
            "old_log_prob": old_log_prob.reshape(-1)[valid],
            "old_values": values.reshape(-1)[valid],
            "advantages": gae.advantages.reshape(-1)[valid],
            "returns": gae.returns.reshape(-1)[valid],
        }

    def minibatch_slices(self, counts: torch.Tensor, batch_size: int) -> list[tuple[slice, int]]:
        """This rank's minibatches of an epoch over its transitions, given every rank's
        number of them (``union_counts``): consecutive slices of ``batch_size``, each with
        the number of transitions in the union's minibatch (the same slice of every rank).
        Every rank gets as many slices as the rank with the most transitions needs; a rank
        with fewer gets empty ones, so the ranks take their optimizer steps together."""
        longest = int(counts.max()) if len(counts) else 0
        slices = []
        for start in range(0, longest, batch_size):
            union = int((counts - start).clamp(min=0, max=batch_size).sum())
            slices.append((slice(start, start + batch_size), union))
        return slices

    def advantage_scales(
        self, advantages: torch.Tensor, slices: list[tuple[slice, int]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mean, std) of the advantages of each union minibatch (the std with n - 1), for
        standardizing them; across processes one all_reduce for all of them."""
        if not slices:
            return []
        if self.group is False:
            one = torch.ones((), dtype=advantages.dtype)
            return [(advantages[where].mean(), advantages[where].std()) if union > 1
                    else (one - 1, one) for where, union in slices]  # fmt: skip
        # float64 sums of A and A²: Σ A² - n mean² loses about (mean / std)² x 1e-16 of the
        # variance, harmless unless the mean is 10^6 times the std
        wide = advantages.double()
        sums = self.sum_over_ranks(torch.stack(
            [torch.stack([wide[where].sum(), (wide[where] ** 2).sum()]) for where, _ in slices]
        ))  # fmt: skip
        scales = []
        for (total, squares), (_, union) in zip(sums, slices, strict=True):
            mean = total / union
            std = ((squares - union * mean**2).clamp(min=0) / max(union - 1, 1)).sqrt()
            scales.append((mean.to(advantages.dtype), std.to(advantages.dtype)))
        return scales

    def standardize(self, advantages: torch.Tensor, union_count: int) -> torch.Tensor:
        """(A - mean) / (std + 1e-8), the mean and (n - 1) std over the union's advantages."""
        ((mean, std),) = self.advantage_scales(advantages, [(slice(None), union_count)])
        return (advantages - mean) / (std + 1e-8)

    def minibatch_generator(self) -> torch.Generator:
        """The generator of this update's minibatch order: reproducible, and different for
        every seed and every update (a function of the seed and the step count alone, so a
        resumed run shuffles as the uninterrupted one)."""
        seed = (self._noise_seed * 1_000_003 + self.num_timesteps) % 2**63
        return torch.Generator().manual_seed(seed)

    def clip_gradients(self) -> float:
        """Clip the gradient norm of every trained parameter; returns the norm before."""
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        limit = float("inf") if self.max_grad_norm is None else self.max_grad_norm
        return float(torch.nn.utils.clip_grad_norm_(parameters, limit, foreach=True))

    def union_explained_variance(self, predicted: torch.Tensor, target: torch.Tensor) -> float:
        """:func:`explained_variance` over the union of the ranks' transitions."""
        if self.group is False:
            return explained_variance(predicted, target)
        residual = (target - predicted).double()
        target = target.double()
        sums = self.sum_over_ranks(torch.stack([
            torch.tensor(float(target.numel()), dtype=torch.float64), target.sum(),
            (target**2).sum(), residual.sum(), (residual**2).sum(),
        ]))  # fmt: skip
        count = float(sums[0])
        if count < 2:
            return float("nan")
        variance = float(sums[2] - sums[1] ** 2 / count)
        residual_variance = float(sums[4] - sums[3] ** 2 / count)
        return float("nan") if variance <= 0 else 1.0 - residual_variance / variance


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 for a perfect critic, 0 for a constant."""
    variance = float(target.var())
    return float("nan") if variance == 0 else 1.0 - float((target - predicted).var()) / variance
