"""A2C: synchronous advantage actor-critic, one gradient step per rollout."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..core.losses import score_function_surrogate
from .actor_critic import ActorCritic

__all__ = ["A2C"]


class A2C(ActorCritic):
    """Advantage actor-critic (Mnih et al., 2016, synchronous form): per rollout one step on
    -E[A log π(a|s)] + vf_coef E[(V - R)²] - ent_coef E[entropy], with GAE(λ) advantages
    (λ = 1 by default: the n-step returns of the paper).

    Defaults are Stable-Baselines3's: 5 steps per environment, learning rate 7e-4,
    RMSprop (alpha 0.99, eps 1e-5), advantages not standardized, gradient norm clipped to 0.5.

    Args:
        env, **options: as for :class:`ActorCritic` and :class:`OnPolicyAgent`.
        optimizer: "rmsprop" (Stable-Baselines3's choice) or "adam".
    """

    defaults: ClassVar[dict[str, Any]] = {
        "n_envs": 8,
        "n_steps": 5,
        "learning_rate": 7e-4,
        "gae_lambda": 1.0,
        "normalize_advantage": False,
    }

    def __init__(self, env: Any, *, optimizer: str = "rmsprop", **options: Any) -> None:
        if optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: 'rmsprop', 'adam'")
        self._optimizer_name = optimizer
        super().__init__(env, **{**self.defaults, **options})
        self.config["optimizer"] = optimizer

    def _optimizer(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self._optimizer_name == "adam":
            return super()._optimizer(parameters)
        return torch.optim.RMSprop(
            parameters, lr=self.learning_rate, alpha=0.99, eps=1e-5, foreach=True
        )

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The three terms of the loss on a rollout: policy_loss (the negated score-function
        surrogate with the critic as baseline), value_loss, entropy; and the flat batch.
        Across processes each term is this rank's share of the union's mean (its sum over
        this rank's transitions divided by the union's count), so the ranks' terms add up
        to the union's."""
        return self.flat_losses(self.flatten(batch))

    def flat_losses(
        self, flat: dict[str, torch.Tensor], union: int | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`losses` on the flat transitions of a rollout; ``union``, the union's number
        of transitions, when the caller has it already."""
        advantages = flat["advantages"]
        if union is None:
            union = int(self.union_counts(advantages.shape[0]).sum())
        if union == 0:  # optimize() skips such a rollout
            raise ValueError("the rollout holds no transition (only autoreset steps)")
        if self.normalize_advantage and union > 1:
            advantages = self.standardize(advantages, union)
        log_prob, entropy = self.policy.log_prob_and_entropy(flat["obs"], flat["actions"])
        # the score-function estimator of probcalc.mc, with the critic as its baseline
        policy_loss = -score_function_surrogate(log_prob, advantages, reduction="sum") / union
        value_loss = ((self.value(flat["obs"]).squeeze(-1) - flat["returns"]) ** 2).sum() / union
        return {"policy_loss": policy_loss, "value_loss": value_loss,
                "entropy": entropy.sum() / union, "flat": flat}  # fmt: skip

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.optimize(self.flatten(batch))

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step on the flat transitions of a rollout (this rank's part of the union); a
        rollout of autoreset steps alone (no rank has a transition) gives no step."""
        union = int(self.union_counts(flat["obs"].shape[0]).sum())
        if union == 0:
            return {}
        terms = self.flat_losses(flat, union)
        loss = terms["policy_loss"] + self.vf_coef * terms["value_loss"] \
            - self.ent_coef * terms["entropy"]  # fmt: skip
        self.optimizer.zero_grad()
        loss.backward()
        self.reduce_gradients()
        grad_norm = self.clip_gradients()
        self.optimizer.step()
        flat = terms["flat"]
        names = ("policy_loss", "value_loss", "entropy")
        union_terms = self.sum_over_ranks(torch.stack([terms[name].detach() for name in names]))
        figures = {name: float(value) for name, value in zip(names, union_terms, strict=True)}
        return {**figures, "grad_norm": grad_norm,
                "explained_variance": self.union_explained_variance(flat["old_values"],
                                                                    flat["returns"]),
                "std": float(self.policy.log_std.detach().exp().mean())}  # fmt: skip
