"""REINFORCE: the score-function estimator of probcalc.mc applied to a policy.

The gradient of the expected return is estimated by the core's
``score_function_surrogate(log π(a_t | s_t), G_t - b_t)``, the same surrogate
probcalc.mc.score_function_grad uses. G_t is the discounted return-to-go within the
rollout, and b_t the mean of the returns of the *other* environments at the same step: a
leave-one-out baseline that is unbiased, because the other environments' trajectories do
not depend on this environment's actions (the other returns of the same trajectory would).
Across processes the other environments are those of every rank.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..core.losses import score_function_surrogate
from .advantages import generalized_advantages
from .agent import OnPolicyAgent
from .config import REINFORCEConfig
from .rollout import Rollout

__all__ = ["REINFORCE"]


class REINFORCE(OnPolicyAgent):
    """Monte Carlo policy gradient with a leave-one-out baseline across environments:
    one Adam step on the negated surrogate per rollout. Settings:
    :class:`~probcalc.rl.config.REINFORCEConfig` (defaults: 8 envs x 16 steps, learning
    rate 3e-3).

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: a :class:`~probcalc.rl.config.REINFORCEConfig`.
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of REINFORCEConfig.

    Raises:
        TypeError: as :class:`OnPolicyAgent`.
        ValueError: as :class:`OnPolicyAgent`.
    """

    Config: ClassVar[type[REINFORCEConfig]] = REINFORCEConfig

    def surrogate(self, rollout: Rollout, union_count: int | None = None) -> torch.Tensor:
        """The score-function surrogate whose gradient estimates ∇ E[return]; its negation
        is the loss. Returns-to-go are cut at the rollout's end (no bootstrap: REINFORCE
        has no critic) and at episode ends; autoreset steps are left out. Across processes
        (every rank must call it) it is this rank's share of the union's mean, and the
        baselines are taken over the environments of every rank. ``union_count``: the
        union's number of transitions, when the caller has it already.

        Raises:
            ValueError: no rank's rollout holds a transition (only autoreset steps).
        """
        rewards = rollout.rewards.double()
        returns = generalized_advantages(
            rewards,
            torch.zeros_like(rewards),
            rollout.terminated | rollout.truncated,
            torch.zeros_like(rollout.truncated),
            torch.zeros(rewards.shape[1], dtype=rewards.dtype),
            reset_step=rollout.reset_step,
            gamma=self.config.gamma,
            gae_lambda=1.0,
        )
        valid = returns.valid
        if union_count is None:
            union_count = int(self.union_counts(int(valid.sum())).sum())
        if union_count == 0:
            raise ValueError("the rollout holds no transition (only autoreset steps)")
        # leave-one-out across environments (every rank's): b = mean of the other
        # environments' returns at the same step (none where no other has a transition)
        kept = torch.where(valid, returns.returns, torch.zeros_like(returns.returns))
        step_sums, step_counts = self.sum_over_ranks(
            torch.stack([kept.sum(dim=1), valid.sum(dim=1).to(kept.dtype)])
        )
        others = step_counts[:, None] - valid.to(kept.dtype)
        baseline = (step_sums[:, None] - kept) / others.clamp(min=1)
        weights = (returns.returns - torch.where(others > 0, baseline, 0.0))[valid]
        log_prob = self.policy.log_prob(rollout.obs[valid], rollout.actions[valid])
        surrogate = score_function_surrogate(log_prob, weights.to(log_prob.dtype), reduction="sum")
        return surrogate / union_count

    def update(self, rollout: Rollout) -> dict[str, float]:
        """One gradient step on the negated surrogate (none when no rank's rollout holds a
        transition: autoreset steps alone)."""
        union_count = int(self.union_counts(int((~rollout.reset_step).sum())).sum())
        if union_count == 0:
            return {}
        loss = -self.surrogate(rollout, union_count)
        self.optimizer.zero_grad()
        loss.backward()
        self.reduce_gradients()
        self.optimizer.step()
        return {
            "loss": float(self.sum_over_ranks(loss.detach())),
            "std": float(self.policy.log_std.detach().exp().mean()),
        }
