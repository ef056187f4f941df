"""Generalized advantage estimation over vectorized rollouts, with time limits done right.

Rollout tensors have shape (steps, envs). Three flags per step matter:

- ``terminated``: the episode really ended (a terminal state): nothing to bootstrap.
- ``truncated``: a time limit cut it: bootstrap from the value of the true final
  observation (``final_values``), not from zero (SB3 #633, CleanRL #198).
- ``reset_step``: Gymnasium 1.x vector environments reset on the step AFTER a done, which
  returns the reset observation with reward 0 and no real transition: such steps carry no
  advantage and are masked out of the loss (``valid`` is False there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Advantages", "generalized_advantages"]


@dataclass(frozen=True)
class Advantages:
    """advantages and returns (steps, envs), and ``valid``: the steps that are real
    transitions (False on the autoreset steps of Gymnasium's vector environments)."""

    advantages: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor


def generalized_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    next_value: torch.Tensor,
    *,
    final_values: torch.Tensor | None = None,
    reset_step: torch.Tensor | None = None,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
) -> Advantages:
    """GAE(λ): A_t = Σ_k (γλ)^k δ_(t+k), δ_t = r_t + γ V(s_(t+1)) (1 - terminal) - V(s_t).

    Args:
        rewards, values, terminated, truncated: (steps, envs); values are V(s_t).
        next_value: V of the observation after the last step, (envs,).
        final_values: V of the true final observation at truncated steps (steps, envs);
            required when any step is truncated.
        reset_step: (steps, envs) True on the autoreset steps to skip (Gymnasium 1.x).
        gamma, gae_lambda: the discount and the GAE parameter.

    Returns:
        Advantages(advantages, returns = advantages + values, valid).

    Raises:
        ValueError: for mismatched shapes, or truncated steps without final_values.
    """
    steps, envs = rewards.shape
    for name, tensor in (("values", values), ("terminated", terminated), ("truncated", truncated)):
        if tensor.shape != (steps, envs):
            raise ValueError(f"{name} must have shape {(steps, envs)}, got {tuple(tensor.shape)}")
    if next_value.shape != (envs,):
        raise ValueError(f"next_value must have shape ({envs},), got {tuple(next_value.shape)}")
    truncated = truncated.bool() & ~terminated.bool()
    if bool(truncated.any()) and final_values is None:
        raise ValueError("truncated steps need final_values: V of the true final observation")
    skip = torch.zeros_like(terminated, dtype=torch.bool) if reset_step is None else reset_step
    valid = ~skip.bool()
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(envs, dtype=rewards.dtype, device=rewards.device)
    upcoming_value = next_value
    for t in reversed(range(steps)):
        # the value of what followed step t: V(s_(t+1)), or at a time limit V(final obs)
        bootstrap = upcoming_value
        if final_values is not None:
            bootstrap = torch.where(truncated[t], final_values[t], bootstrap)
        bootstrap = torch.where(terminated[t].bool(), torch.zeros_like(bootstrap), bootstrap)
        delta = rewards[t] + gamma * bootstrap - values[t]
        # the recursion stops at an episode's end (terminated or truncated)
        ended = terminated[t].bool() | truncated[t]
        running = delta + gamma * gae_lambda * torch.where(ended, torch.zeros_like(running),
                                                           running)  # fmt: skip
        # an autoreset step is no transition: no advantage, and it breaks the recursion
        running = torch.where(skip[t].bool(), torch.zeros_like(running), running)
        advantages[t] = running
        upcoming_value = values[t]
    return Advantages(advantages, advantages + values, valid)
