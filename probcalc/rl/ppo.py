"""PPO: the core's clipped surrogate on GAE advantages, in minibatch epochs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..core.losses import clipped_surrogate_loss
from .actor_critic import ActorCritic
from .settings import settings

__all__ = ["PPO"]

DEFAULT_BATCH_SIZE = 64  # Stable-Baselines3's


class PPO(ActorCritic):
    """Proximal policy optimization (Schulman et al., 2017) on a Gaussian policy.

    Each rollout (n_envs x n_steps) gives GAE(λ) advantages; then ``n_epochs`` passes of
    shuffled minibatches of ``batch_size`` minimize the core's clipped surrogate
    (advantages standardized per minibatch), ``vf_coef`` times the value regression (with
    the prediction clipped to ±clip_range_vf around the rollout's values if given, as
    Stable-Baselines3 does), minus ``ent_coef`` times the entropy, with the gradient norm
    clipped to ``max_grad_norm``. Training stops early, before the step of the first
    minibatch whose approximate KL E[(r - 1) - log r] passes 1.5 target_kl (as
    Stable-Baselines3 does); ``approx_kl`` in the figures is the mean over the minibatches.

    Defaults are Stable-Baselines3's (2048 transitions per update: 8 envs x 256 steps).
    Across processes ``n_envs`` and ``batch_size`` are per rank: an update's minibatch is
    the union of the ranks' minibatches, world size x batch_size transitions.
    Settings tuned per task are in probcalc.rl.tuned.

    Args:
        env, **options: as for :class:`ActorCritic` and :class:`OnPolicyAgent`.
        batch_size: the minibatch size, at most a rollout (n_envs x n_steps). None (the
            default): Stable-Baselines3's 64, or the whole rollout when that is smaller.
        n_epochs, clip_range, clip_range_vf, target_kl: PPO's settings.

    Raises:
        ValueError: a batch_size < 2 or larger than a rollout (Stable-Baselines3 warns; here
            it is refused), n_epochs < 1, clip_range <= 0, clip_range_vf or target_kl <= 0
            (checked before the environments are built), and as :class:`ActorCritic`.
    """

    defaults: ClassVar[dict[str, Any]] = {"n_envs": 8, "n_steps": 256, "learning_rate": 3e-4}

    def __init__(
        self,
        env: Any,
        *,
        n_epochs: int = 10,
        batch_size: int | None = None,
        clip_range: float = 0.2,
        clip_range_vf: float | None = None,
        target_kl: float | None = None,
        **options: Any,
    ) -> None:
        if batch_size is not None and batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be at least 1, got {n_epochs}")
        for name, value in (("clip_range", clip_range), ("clip_range_vf", clip_range_vf),
                            ("target_kl", target_kl)):  # fmt: skip
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        options = {**self.defaults, **options}
        n_envs, n_steps = (options.get(name, settings(type(self))[name][1])
                           for name in ("n_envs", "n_steps"))  # fmt: skip
        rollout = n_envs * n_steps
        if batch_size is None:
            batch_size = max(2, min(DEFAULT_BATCH_SIZE, rollout))
        elif n_envs >= 1 and n_steps >= 1 and batch_size > rollout:
            raise ValueError(
                f"batch_size {batch_size} is larger than a rollout of n_envs x n_steps = "
                f"{n_envs} x {n_steps} = {rollout} transitions (per process): give a "
                f"batch_size of at most {rollout} ({rollout} is one minibatch of the whole "
                f"rollout), or raise n_envs or n_steps"
            )
        super().__init__(env, **options)
        self.config.update(n_epochs=n_epochs, batch_size=batch_size, clip_range=clip_range,
                           clip_range_vf=clip_range_vf, target_kl=target_kl)  # fmt: skip
        self.n_epochs, self.batch_size, self.clip_range = n_epochs, batch_size, clip_range
        self.clip_range_vf, self.target_kl = clip_range_vf, target_kl

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.optimize(self.flatten(batch))

    def _too_far(self, approx_kl: torch.Tensor) -> bool:
        return self.target_kl is not None and float(approx_kl) > 1.5 * self.target_kl

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """PPO's epochs on the flat transitions of a rollout (this rank's part of the union:
        across processes each minibatch is the union of the ranks' same slice)."""
        n = flat["obs"].shape[0]
        generator = self.minibatch_generator()
        slices = self.minibatch_slices(self.union_counts(n), self.batch_size)
        # policy loss, value loss, entropy, clip fraction, approximate KL, minibatch count
        totals = torch.zeros(6, dtype=torch.float64)
        epochs, stopped = 0, False
        for _ in range(self.n_epochs):
            epochs += 1
            # one gather per epoch, then contiguous slices: cheaper than indexing each batch
            order = torch.randperm(n, generator=generator)
            shuffled = {name: tensor[order] for name, tensor in flat.items()}
            if self.normalize_advantage:
                scales = self.advantage_scales(shuffled["advantages"], slices)
            for j, (where, union) in enumerate(slices):
                if union < 2:
                    continue
                part = {name: t[where] for name, t in shuffled.items()}
                log_prob, entropy = self.policy.log_prob_and_entropy(part["obs"], part["actions"])
                with torch.no_grad():
                    log_ratio = log_prob - part["old_log_prob"]
                    kl_and_clipped = torch.stack([
                        ((log_ratio.exp() - 1) - log_ratio).sum(),
                        ((log_ratio.exp() - 1).abs() > self.clip_range).to(log_ratio.dtype).sum(),
                    ]) / union  # fmt: skip
                # as Stable-Baselines3: stop before a step from a policy already too far away
                if self.group is False and self._too_far(kl_and_clipped[0]):
                    stopped = True
                    break
                advantages = part["advantages"]
                if self.normalize_advantage:
                    mean, std = scales[j]
                    advantages = (advantages - mean) / (std + 1e-8)
                # sums over this rank's part / the union's count: summed over the ranks, the
                # union's means (and in one process, bit for bit the means)
                policy_loss = clipped_surrogate_loss(log_prob, part["old_log_prob"], advantages,
                                                     clip_range=self.clip_range,
                                                     reduction="sum") / union  # fmt: skip
                predicted = self.value(part["obs"]).squeeze(-1)
                if self.clip_range_vf is not None:
                    predicted = part["old_values"] + (predicted - part["old_values"]).clamp(
                        -self.clip_range_vf, self.clip_range_vf)  # fmt: skip
                value_loss = ((predicted - part["returns"]) ** 2).sum() / union
                entropy = entropy.sum() / union
                loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
                self.optimizer.zero_grad()
                loss.backward()
                # across processes the union's KL rides with the gradients (one all_reduce),
                # and the ranks stop together, before stepping
                kl_and_clipped = self.reduce_gradients(kl_and_clipped)
                if self.group is not False and self._too_far(kl_and_clipped[0]):
                    stopped = True
                    break
                approx_kl, clipped = kl_and_clipped
                self.clip_gradients()
                self.optimizer.step()
                figures = [policy_loss.detach(), value_loss.detach(), entropy.detach(), clipped,
                           approx_kl, torch.ones(())]  # fmt: skip
                totals += torch.stack(figures).double()
            if stopped:
                break
        totals[:3] = self.sum_over_ranks(totals[:3])  # the union's losses
        mean = totals[:5] / totals[5].clamp(min=1)
        with torch.no_grad():
            explained = self.union_explained_variance(flat["old_values"], flat["returns"])
        return {"policy_loss": float(mean[0]), "value_loss": float(mean[1]),
                "entropy": float(mean[2]), "clip_fraction": float(mean[3]),
                "approx_kl": float(mean[4]), "epochs": epochs,
                "explained_variance": explained,
                "std": float(self.policy.log_std.detach().exp().mean())}  # fmt: skip
