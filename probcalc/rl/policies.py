"""Gaussian policies for Box action spaces: a diagonal Gaussian with a state-independent
log standard deviation, and its tanh-squashed variant whose log-probability carries the
change-of-variables correction. Actions outside the box are clipped by the environment
step, never inside the log-probability (CleanRL #240)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

__all__ = ["GaussianPolicy", "SquashedGaussianPolicy", "mlp"]


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """π(a | s) = N(μ(s), diag(exp(2 log_std))), μ an MLP (``hidden=()``: linear)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.mean = mlp([obs_dim, *hidden, act_dim])
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Independent:
        """The action distribution at observations (batch, obs_dim)."""
        return Independent(Normal(self.mean(obs), torch.exp(self.log_std)), 1)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).log_prob(actions)

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        return dist.mean if deterministic else dist.sample()


class SquashedGaussianPolicy(GaussianPolicy):
    """a = tanh(u), u ~ N(μ(s), diag σ²): actions inside (-1, 1) by construction, with
    log π(a) = log N(u) - Σ log(1 - tanh(u)²) (the change of variables)."""

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(actions.dtype).eps
        clipped = actions.clamp(-1 + eps, 1 - eps)
        pre = torch.atanh(clipped)
        # log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        correction = 2 * (math.log(2) - pre - nn.functional.softplus(-2 * pre))
        return self.distribution(obs).log_prob(pre) - correction.sum(-1)

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return torch.tanh(super().sample(obs, deterministic))
