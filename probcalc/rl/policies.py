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


def mlp(
    sizes: list[int], activation: type[nn.Module] = nn.Tanh, output_gain: float | None = None
) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end).

    With ``output_gain``, weights are orthogonal (gain sqrt 2 on hidden layers, output_gain
    on the last) and biases 0: the initialization of Stable-Baselines3 and CleanRL, where a
    policy's last layer uses 0.01 so the first actions sit near the mean of the box.
    """
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layer = nn.Linear(fan_in, fan_out)
        last = i == len(sizes) - 2
        if output_gain is not None:
            nn.init.orthogonal_(layer.weight, gain=output_gain if last else math.sqrt(2))
            nn.init.zeros_(layer.bias)
        layers.append(layer)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_ENTROPY_CONSTANT = 0.5 * math.log(2 * math.pi * math.e)


class GaussianPolicy(nn.Module):
    """π(a | s) = N(μ(s), diag(exp(2 log_std))), μ an MLP (``hidden=()``: linear);
    ``ortho_init``: orthogonal weights, 0.01 on the last layer (see :func:`mlp`).

    ``log_prob`` and ``entropy`` are written out rather than built from
    torch.distributions objects: a PPO update calls them hundreds of times on small
    batches, where constructing the distribution costs as much as the arithmetic.
    ``distribution`` gives the torch.distributions object for everything else.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        log_std_init: float = 0.0,
        ortho_init: bool = False,
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.mean = mlp([obs_dim, *hidden, act_dim], activation,
                        output_gain=0.01 if ortho_init else None)  # fmt: skip
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Independent:
        """The distribution of the (unsquashed) Gaussian at observations (batch, obs_dim)."""
        return Independent(Normal(self.mean(obs), torch.exp(self.log_std)), 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The distribution's parameters at observations (batch, obs_dim): the mean
        (batch, act_dim) and the log standard deviation (act_dim,)."""
        return self.mean(obs), self.log_std

    def log_prob_given(
        self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """log π(actions) under the distribution with these parameters, shape (batch,):
        for functions of the parameters (the KL and surrogate of natural gradients)."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - _LOG_SQRT_2PI).sum(-1)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(actions | obs), shape (batch,)."""
        return self.log_prob_given(self.mean(obs), self.log_std, actions)

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(actions | obs) and the entropy of π(· | obs), both (batch,)."""
        log_prob = self.log_prob(obs, actions)
        entropy = (self.log_std + _ENTROPY_CONSTANT).sum().expand_as(log_prob)
        return log_prob, entropy

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Actions (batch, act_dim): the mean, or a draw using ``generator``."""
        mean = self.mean(obs)
        if deterministic:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(self.log_std) * noise


class SquashedGaussianPolicy(GaussianPolicy):
    """a = tanh(u), u ~ N(μ(s), diag σ²): actions inside (-1, 1) by construction, with
    log π(a) = log N(u) - Σ log(1 - tanh(u)²) (the change of variables). The entropy has
    no closed form; ``log_prob_and_entropy`` estimates it by -log π(a) of the given actions,
    as Stable-Baselines3 does."""

    def log_prob_given(
        self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        eps = torch.finfo(actions.dtype).eps
        pre = torch.atanh(actions.clamp(-1 + eps, 1 - eps))
        # log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        correction = 2 * (math.log(2) - pre - nn.functional.softplus(-2 * pre))
        return super().log_prob_given(mean, log_std, pre) - correction.sum(-1)

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_prob = self.log_prob(obs, actions)
        return log_prob, -log_prob

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        return torch.tanh(super().sample(obs, deterministic, generator))
