"""A2C: synchronous advantage actor-critic, one gradient step per rollout."""

from __future__ import annotations

from typing import ClassVar

import torch

from ..core.losses import score_function_surrogate
from .actor_critic import ActorCritic
from .config import A2CConfig
from .rollout import Rollout

__all__ = ["A2C"]


class A2C(ActorCritic):
    """Advantage actor-critic (Mnih et al., 2016, synchronous form): per rollout one step on
    -E[A log π(a|s)] + vf_coef E[(V - R)²] - ent_coef E[entropy], with GAE(λ) advantages
    (λ = 1 by default: the n-step returns of the paper).

    Defaults are Stable-Baselines3's (:class:`~probcalc.rl.config.A2CConfig`): 5 steps per
    environment, learning rate 7e-4, RMSprop (alpha 0.99, eps 1e-5), advantages not
    standardized, gradient norm clipped to 0.5.

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: an :class:`~probcalc.rl.config.A2CConfig`.
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of A2CConfig.

    Raises:
        ValueError: an unknown optimizer, and as :class:`ActorCritic`.
        TypeError: as :class:`OnPolicyAgent`.
    """

    Config: ClassVar[type[A2CConfig]] = A2CConfig

    def _optimizer(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.config.optimizer == "adam":
            return super()._optimizer(parameters)
        return torch.optim.RMSprop(
            parameters, lr=self.config.learning_rate, alpha=0.99, eps=1e-5, foreach=True
        )

    def losses(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The three terms of the loss on a rollout: policy_loss (the negated score-function
        surrogate with the critic as baseline), value_loss, entropy; and the flat batch.
        Across processes each term is this rank's share of the union's mean (its sum over
        this rank's transitions divided by the union's count), so the ranks' terms add up
        to the union's."""
        return self.flat_losses(self.flatten(rollout))

    def flat_losses(
        self, flat: dict[str, torch.Tensor], union_count: int | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`losses` on the flat transitions of a rollout; ``union_count``, the union's
        number of transitions, when the caller has it already."""
        advantages = flat["advantages"]
        if union_count is None:
            union_count = int(self.union_counts(advantages.shape[0]).sum())
        if union_count == 0:  # optimize() skips such a rollout
            raise ValueError("the rollout holds no transition (only autoreset steps)")
        if self.config.normalize_advantage and union_count > 1:
            advantages = self.standardize(advantages, union_count)
        log_prob, entropy = self.policy.log_prob_and_entropy(
            flat["obs"], flat["actions"], checked=True
        )
        # the score-function estimator of probcalc.mc, with the critic as its baseline
        pg_loss = -score_function_surrogate(log_prob, advantages, reduction="sum") / union_count
        predicted = self.value(flat["obs"]).squeeze(-1)
        v_loss = ((predicted - flat["returns"]) ** 2).sum() / union_count
        return {
            "policy_loss": pg_loss,
            "value_loss": v_loss,
            "entropy": entropy.sum() / union_count,
            "flat": flat,
        }

    def update(self, rollout: Rollout) -> dict[str, float]:
        return self.optimize(self.flatten(rollout))

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step on the flat transitions of a rollout (this rank's part of the union); a
        rollout of autoreset steps alone (no rank has a transition) gives no step."""
        union_count = int(self.union_counts(flat["obs"].shape[0]).sum())
        if union_count == 0:
            return {}
        terms = self.flat_losses(flat, union_count)
        config = self.config
        loss = (
            terms["policy_loss"]
            + config.vf_coef * terms["value_loss"]
            - config.ent_coef * terms["entropy"]
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.reduce_gradients()
        grad_norm = self.clip_gradients()
        self.optimizer.step()
        names = ("policy_loss", "value_loss", "entropy")
        union_terms = self.sum_over_ranks(torch.stack([terms[name].detach() for name in names]))
        metrics = {name: float(value) for name, value in zip(names, union_terms, strict=True)}
        return {
            **metrics,
            "grad_norm": float(grad_norm),
            "explained_variance": self.union_explained_variance(
                flat["old_values"], flat["returns"]
            ),
            "std": float(self.policy.log_std.detach().exp().mean()),
        }
