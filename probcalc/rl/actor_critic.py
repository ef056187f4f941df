"""The actor-critic layer shared by A2C and PPO: a value network and GAE(λ) advantages that
bootstrap at time limits and skip Gymnasium's autoreset steps."""

from __future__ import annotations

from typing import ClassVar

import torch

from .advantages import generalized_advantages
from .agent import OnPolicyAgent, _initialization
from .config import ACTIVATIONS, ActorCriticConfig
from .policies import mlp
from .rollout import Rollout

__all__ = ["ActorCritic"]


class ActorCritic(OnPolicyAgent):
    """An :class:`OnPolicyAgent` with a critic V(s) (an MLP, even for a linear policy: an
    LQR's value is quadratic) trained on the λ-returns, in the same optimizer as the policy.
    Its settings are :class:`~probcalc.rl.config.ActorCriticConfig`'s.

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: the settings as a config of the algorithm.
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of the config.

    Raises:
        ValueError: gae_lambda outside [0, 1], vf_coef < 0 or max_grad_norm <= 0 (checked
            before the environments are built), and as :class:`OnPolicyAgent`.
        TypeError: as :class:`OnPolicyAgent`.
    """

    Config: ClassVar[type[ActorCriticConfig]] = ActorCriticConfig

    def _build_networks(self, obs_dim: int, act_dim: int) -> None:
        """The policy, then the critic (seeded by ``config.seed + 1``)."""
        super()._build_networks(obs_dim, act_dim)
        config = self.config
        with _initialization(config.seed + 1, self.dtype):
            self.value = mlp(
                [obs_dim, *config.hidden, 1],
                ACTIVATIONS[config.activation],
                output_gain=1.0 if config.ortho_init else None,
            ).to(self.dtype)
        self.networks["value"] = self.value

    def flatten(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The rollout's real transitions (autoreset steps left out) as flat tensors: obs,
        actions, old_log_prob, old_values, advantages (GAE), returns (advantages + values)."""
        obs, actions = rollout.obs, rollout.actions
        steps, envs = rollout.rewards.shape
        with torch.no_grad():
            values = self.value(obs).squeeze(-1)  # (steps, envs)
            next_value = self.value(self.policy_input(self._obs)).squeeze(-1)
            old_log_prob = self.policy.log_prob(obs, actions)
        # Gymnasium 1.x: at a truncated step the returned observation is the true final one,
        # and the agent sees it as the next step's observation: its value bootstraps
        final_values = torch.cat([values[1:], next_value[None]])
        gae = generalized_advantages(
            rollout.rewards,
            values,
            rollout.terminated,
            rollout.truncated,
            next_value,
            final_values=final_values,
            reset_step=rollout.reset_step,
            gamma=self.config.gamma,
            gae_lambda=self.config.gae_lambda,
        )
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
            union_count = int((counts - start).clamp(min=0, max=batch_size).sum())
            slices.append((slice(start, start + batch_size), union_count))
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
            return [
                (advantages[rows].mean(), advantages[rows].std())
                if union_count > 1
                else (one - 1, one)
                for rows, union_count in slices
            ]
        # float64 sums of A and A²: Σ A² - n mean² loses about (mean / std)² x 1e-16 of the
        # variance, harmless unless the mean is 10^6 times the std
        wide = advantages.double()
        sums = self.sum_over_ranks(
            torch.stack(
                [torch.stack([wide[rows].sum(), (wide[rows] ** 2).sum()]) for rows, _ in slices]
            )
        )
        scales = []
        for (total, squares), (_, union_count) in zip(sums, slices, strict=True):
            mean = total / union_count
            std = ((squares - union_count * mean**2).clamp(min=0) / max(union_count - 1, 1)).sqrt()
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
        seed = (self._rank_seed * 1_000_003 + self.num_timesteps) % 2**63
        return torch.Generator().manual_seed(seed)

    def clip_gradients(self) -> torch.Tensor:
        """Clip the gradient norm of every trained parameter to max_grad_norm; returns the
        norm before (0-d). The arithmetic of torch.nn.utils.clip_grad_norm_(foreach=True),
        bit for bit, without its per-call grouping by device and dtype, which costs as much
        as the clip itself on the small networks of a minibatch step."""
        grads = [
            p.grad
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not grads:
            return torch.zeros(())
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.config.max_grad_norm is not None:
            scale = torch.clamp(self.config.max_grad_norm / (total + 1e-6), max=1.0)
            torch._foreach_mul_(grads, scale)
        return total

    def union_explained_variance(self, predicted: torch.Tensor, target: torch.Tensor) -> float:
        """:func:`explained_variance` over the union of the ranks' transitions."""
        if self.group is False:
            return explained_variance(predicted, target)
        residual = (target - predicted).double()
        target = target.double()
        sums = self.sum_over_ranks(
            torch.stack(
                [
                    torch.tensor(float(target.numel()), dtype=torch.float64),
                    target.sum(),
                    (target**2).sum(),
                    residual.sum(),
                    (residual**2).sum(),
                ]
            )
        )
        count = float(sums[0])
        if count < 2:
            return float("nan")
        variance = float(sums[2] - sums[1] ** 2 / count)
        residual_variance = float(sums[4] - sums[3] ** 2 / count)
        return float("nan") if variance <= 0 else 1.0 - residual_variance / variance


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 for a perfect critic, 0 for a constant;
    NaN when it is undefined (fewer than two targets, or targets without variance)."""
    if target.numel() < 2:  # the (n - 1) variance of one sample is undefined
        return float("nan")
    variance = float(target.var())
    return float("nan") if variance == 0 else 1.0 - float((target - predicted).var()) / variance
