"""PPO: the core's clipped surrogate on GAE advantages, in minibatch epochs."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import ClassVar

import torch

from ..core.losses import clipped_surrogate_loss
from .actor_critic import ActorCritic
from .config import PPOConfig
from .rollout import Rollout

__all__ = ["PPO"]


@dataclasses.dataclass
class _RunningSums:
    """Sums over an update's minibatch steps of what PPO logs (means at the end)."""

    pg_loss: float = 0.0
    v_loss: float = 0.0
    entropy: float = 0.0
    clip_fraction: float = 0.0
    approx_kl: float = 0.0
    steps: int = 0


class PPO(ActorCritic):
    """Proximal policy optimization (Schulman et al., 2017) on a Gaussian policy.

    Each rollout (n_envs x n_steps) gives GAE(λ) advantages; then ``n_epochs`` passes of
    shuffled minibatches of ``batch_size`` minimize the core's clipped surrogate
    (advantages standardized per minibatch), ``vf_coef`` times the value regression (with
    the prediction clipped to ±clip_range_vf around the rollout's values if given, as
    Stable-Baselines3 does), minus ``ent_coef`` times the entropy, with the gradient norm
    clipped to ``max_grad_norm``. Training stops early, before the step of the first
    minibatch whose approximate KL E[(r - 1) - log r] passes 1.5 target_kl (as
    Stable-Baselines3 does); ``approx_kl`` in the metrics is the mean over the minibatches.

    Defaults are Stable-Baselines3's (:class:`~probcalc.rl.config.PPOConfig`: 2048
    transitions per update, 8 envs x 256 steps). Across processes ``n_envs`` and
    ``batch_size`` are per rank: an update's minibatch is the union of the ranks'
    minibatches, world size x batch_size transitions. Settings tuned per task are in
    probcalc.rl.tuned.

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: a :class:`~probcalc.rl.config.PPOConfig`.
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of PPOConfig.

    Raises:
        ValueError: a batch_size < 2 or larger than a rollout (Stable-Baselines3 warns; here
            it is refused), n_epochs < 1, clip_range <= 0, clip_range_vf or target_kl <= 0
            (checked before the environments are built), and as :class:`ActorCritic`.
        TypeError: as :class:`OnPolicyAgent`.
    """

    Config: ClassVar[type[PPOConfig]] = PPOConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        return self.optimize(self.flatten(rollout))

    def _kl_stops(self, approx_kl: torch.Tensor, *, summed: bool) -> bool:
        """Whether to stop before this minibatch's step: its approximate KL passes 1.5
        target_kl (as Stable-Baselines3). In one process the check comes before the backward
        pass (``summed=False``); across processes only the KL summed with the gradients
        (``summed=True``) is the union's, so the ranks decide alike, after it."""
        target_kl = self.config.target_kl
        if target_kl is None or (self.group is False) == summed:
            return False
        return float(approx_kl) > 1.5 * target_kl

    def minibatch_sums(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_prob: torch.Tensor,
        advantages: torch.Tensor,
        old_values: torch.Tensor,
        returns: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """A minibatch's sums (0-d tensors): the clipped surrogate loss, the squared value
        error, the entropy (these three differentiable), the approximate KL
        Σ (r - 1) - log r and the count of ratios r outside 1 ± clip_range. With
        ``compile=True`` this is the function torch.compile compiles."""
        config = self.config
        new_log_prob, entropy = self.policy.log_prob_and_entropy(obs, actions, checked=True)
        with torch.no_grad():
            log_ratio = new_log_prob - old_log_prob
            ratio = log_ratio.exp()
            clipped = ((ratio - 1).abs() > config.clip_range).to(log_ratio.dtype)
            kl_sum, clipped_sum = ((ratio - 1) - log_ratio).sum(), clipped.sum()
        pg_sum = clipped_surrogate_loss(
            new_log_prob, old_log_prob, advantages, clip_range=config.clip_range, reduction="sum"
        )
        new_value = self.value(obs).squeeze(-1)
        if config.clip_range_vf is not None:
            new_value = old_values + (new_value - old_values).clamp(
                -config.clip_range_vf, config.clip_range_vf
            )
        v_sum = ((new_value - returns) ** 2).sum()
        return pg_sum, v_sum, entropy.sum(), kl_sum, clipped_sum

    @functools.cached_property
    def _compiled_minibatch_sums(self) -> Callable[..., tuple[torch.Tensor, ...]]:
        """minibatch_sums compiled for minibatches of exactly batch_size rows (a static
        shape: on the CPU, dynamic-shape kernels measured slower than eager)."""
        return torch.compile(self.minibatch_sums, dynamic=False)

    def _minibatch_sums(self, *batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """minibatch_sums, compiled when the config asks and the minibatch is full; the
        shorter last minibatch (autoreset steps shorten rollouts) runs eagerly, so a size
        always takes the same code, whatever sizes came before (a resumed run computes as
        the uninterrupted one), and nothing recompiles."""
        if self.config.compile and len(batch[0]) == self.config.minibatch_size:
            return self._compiled_minibatch_sums(*batch)
        return self.minibatch_sums(*batch)

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """PPO's epochs on the flat transitions of a rollout (this rank's part of the union:
        across processes each minibatch is the union of the ranks' same slice)."""
        config = self.config
        n = flat["obs"].shape[0]
        generator = self.minibatch_generator()
        minibatches = self.minibatch_slices(self.union_counts(n), config.minibatch_size)
        sums = _RunningSums()
        epochs, stopped = 0, False
        for _ in range(config.n_epochs):
            epochs += 1
            # one gather per epoch, then contiguous slices: cheaper than indexing each batch;
            # a minibatch of the whole rollout (and the union's) needs no order
            if len(minibatches) == 1 and minibatches[0][1] == n:
                shuffled = flat
            else:
                order = torch.randperm(n, generator=generator)
                shuffled = {name: tensor[order] for name, tensor in flat.items()}
            if config.normalize_advantage:
                scales = self.advantage_scales(shuffled["advantages"], minibatches)
            for i, (rows, union_count) in enumerate(minibatches):
                if union_count < 2:
                    continue
                mb = {name: tensor[rows] for name, tensor in shuffled.items()}
                advantages = mb["advantages"]
                if config.normalize_advantage:
                    mean, std = scales[i]
                    advantages = (advantages - mean) / (std + 1e-8)
                pg_sum, v_sum, entropy_sum, kl_sum, clipped_sum = self._minibatch_sums(
                    mb["obs"],
                    mb["actions"],
                    mb["old_log_prob"],
                    advantages,
                    mb["old_values"],
                    mb["returns"],
                )
                kl_and_clipped = torch.stack([kl_sum, clipped_sum]) / union_count
                if self._kl_stops(kl_and_clipped[0], summed=False):
                    stopped = True
                    break
                # sums over this rank's part / the union's count: summed over the ranks, the
                # union's means (and in one process, bit for bit the means)
                pg_loss = pg_sum / union_count
                v_loss = v_sum / union_count
                entropy_loss = entropy_sum / union_count
                loss = pg_loss + config.vf_coef * v_loss - config.ent_coef * entropy_loss
                self.optimizer.zero_grad()
                loss.backward()
                # across processes the union's KL rides with the gradients (one all_reduce)
                kl_and_clipped = self.reduce_gradients(kl_and_clipped)
                if self._kl_stops(kl_and_clipped[0], summed=True):
                    stopped = True
                    break
                self.clip_gradients()
                self.optimizer.step()
                sums.pg_loss += float(pg_loss.detach().double())
                sums.v_loss += float(v_loss.detach().double())
                sums.entropy += float(entropy_loss.detach().double())
                sums.approx_kl += float(kl_and_clipped[0].double())
                sums.clip_fraction += float(kl_and_clipped[1].double())
                sums.steps += 1
            if stopped:
                break
        return self._metrics(flat, sums, epochs)

    def _metrics(
        self, flat: dict[str, torch.Tensor], sums: _RunningSums, epochs: int
    ) -> dict[str, float]:
        """The means over the minibatch steps (the losses the union's), and the critic's fit."""
        losses = torch.tensor([sums.pg_loss, sums.v_loss, sums.entropy], dtype=torch.float64)
        pg_loss, v_loss, entropy = self.sum_over_ranks(losses).tolist()
        steps = max(sums.steps, 1)
        with torch.no_grad():
            explained = self.union_explained_variance(flat["old_values"], flat["returns"])
        return {
            "policy_loss": pg_loss / steps,
            "value_loss": v_loss / steps,
            "entropy": entropy / steps,
            "clip_fraction": sums.clip_fraction / steps,
            "approx_kl": sums.approx_kl / steps,
            "epochs": epochs,
            "explained_variance": explained,
            "std": float(self.policy.log_std.detach().exp().mean()),
        }
