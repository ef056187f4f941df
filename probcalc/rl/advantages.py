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

import numbers
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


def _unit_interval(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def _tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _values(
    value: object,
    name: str,
    like: torch.Tensor | None = None,
    shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """A finite real tensor of ``shape`` (integers become ``like``'s floating dtype)."""
    tensor = _tensor(value, name)
    if tensor.is_complex() or tensor.dtype is torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {tensor.dtype}")
    if shape is not None and tensor.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape} (steps, envs of rewards "
            f"{tuple(like.shape)}), got {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        floating = like is not None and like.is_floating_point()
        tensor = tensor.to(like.dtype if floating else torch.get_default_dtype())
    if not bool(torch.isfinite(tensor).all()):
        bad = tensor[~torch.isfinite(tensor)].reshape(-1)[:3].tolist()
        raise ValueError(f"{name} must be finite, got values such as {bad}")
    return tensor


def _flags(value: object, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A bool tensor of ``shape`` from bools or 0/1 numbers."""
    tensor = _tensor(value, name)
    if tensor.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape} (steps, envs of rewards), got {tuple(tensor.shape)}"
        )
    if tensor.dtype is torch.bool:
        return tensor
    if tensor.is_complex() or not bool(((tensor == 0) | (tensor == 1)).all()):
        raise ValueError(f"{name} must hold True/False (or 0/1), got {tensor.tolist()}")
    return tensor != 0


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
        rewards: the rewards r_t, (steps, envs).
        values: V(s_t), (steps, envs).
        terminated: whether step t ended its episode in a terminal state, (steps, envs).
        truncated: whether step t ended its episode at a time limit, (steps, envs).
        next_value: V of the observation after the last step, (envs,).
        final_values: V of the true final observation at truncated steps (steps, envs);
            required when any step is truncated.
        reset_step: (steps, envs) True on the autoreset steps to skip (Gymnasium 1.x).
        gamma: the discount, in [0, 1].
        gae_lambda: the GAE parameter λ, in [0, 1].

    Returns:
        Advantages(advantages, returns = advantages + values, valid).

    Raises:
        ValueError: for mismatched shapes, values that are not finite, flags other than
            0/1, gamma or gae_lambda outside [0, 1], or truncated steps without final_values.
        TypeError: inputs that are not tensors of real numbers (bool for the flags).
    """
    gamma = _unit_interval(gamma, "gamma")
    gae_lambda = _unit_interval(gae_lambda, "gae_lambda")
    rewards = _values(rewards, "rewards")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (steps, envs), got {tuple(rewards.shape)}")
    steps, envs = rewards.shape
    values = _values(values, "values", rewards, (steps, envs))
    terminated = _flags(terminated, "terminated", (steps, envs))
    truncated = _flags(truncated, "truncated", (steps, envs))
    next_value = _values(next_value, "next_value", rewards, (envs,))
    if final_values is not None:
        final_values = _values(final_values, "final_values", rewards, (steps, envs))
    if reset_step is not None:
        reset_step = _flags(reset_step, "reset_step", (steps, envs))
    truncated = truncated & ~terminated
    if bool(truncated.any()) and final_values is None:
        raise ValueError("truncated steps need final_values: V of the true final observation")
    skip = torch.zeros_like(terminated, dtype=torch.bool) if reset_step is None else reset_step
    valid = ~skip
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(envs, dtype=rewards.dtype, device=rewards.device)
    upcoming_value = next_value
    for t in reversed(range(steps)):
        # the value of what followed step t: V(s_(t+1)), or at a time limit V(final obs)
        bootstrap = upcoming_value
        if final_values is not None:
            bootstrap = torch.where(truncated[t], final_values[t], bootstrap)
        bootstrap = torch.where(terminated[t], torch.zeros_like(bootstrap), bootstrap)
        delta = rewards[t] + gamma * bootstrap - values[t]
        # the recursion stops at an episode's end (terminated or truncated)
        ended = terminated[t] | truncated[t]
        running = delta + gamma * gae_lambda * torch.where(
            ended, torch.zeros_like(running), running
        )
        # an autoreset step is no transition: no advantage, and it breaks the recursion
        running = torch.where(skip[t], torch.zeros_like(running), running)
        advantages[t] = running
        upcoming_value = values[t]
    return Advantages(advantages, advantages + values, valid)
