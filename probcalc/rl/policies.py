"""Policies for Box action spaces: a diagonal Gaussian with a state-independent log standard
deviation and its tanh-squashed variant whose log-probability carries the
change-of-variables correction (on-policy); SAC's tanh-Gaussian with a state-dependent
standard deviation and the deterministic actor of DDPG and TD3 (off-policy). Actions
outside the box are clipped by the environment step, never inside the log-probability
(CleanRL #240)."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

from ..mc.point_mass import PointMass
from .sde import HeldExploration, sde_log_std

__all__ = [
    "DeterministicActor",
    "GaussianPolicy",
    "SquashedGaussianPolicy",
    "SquashedStateDependentPolicy",
    "StateDependentGaussianPolicy",
    "TanhGaussianActor",
    "mlp",
]


def _sizes(sizes: object, name: str, minimum_length: int) -> list[int]:
    """Layer sizes: a sequence of positive ints; TypeError/ValueError naming ``name``."""
    if isinstance(sizes, str) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of layer sizes, got {sizes!r}")
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"{name} must hold integers, got {sizes!r}")
    if len(sizes) < minimum_length or any(n < 1 for n in sizes):
        at_least = f"at least {minimum_length} " if minimum_length else ""
        raise ValueError(f"{name} must be {at_least}positive integers, got {list(sizes)!r}")
    return [int(n) for n in sizes]


def _check_activation(activation: object) -> None:
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise TypeError(
            f"activation must be an nn.Module class such as torch.nn.Tanh, got {activation!r}"
        )


def checked_network_sizes(
    obs_dim: object, act_dim: object, hidden: object, activation: object
) -> tuple[int, int, list[int]]:
    """obs_dim, act_dim and the hidden sizes as ints, the activation checked; TypeError or
    ValueError naming what is wrong (see :func:`mlp`)."""
    (obs_dim,) = _sizes([obs_dim], "obs_dim", minimum_length=1)
    (act_dim,) = _sizes([act_dim], "act_dim", minimum_length=1)
    hidden = _sizes(hidden, "hidden", minimum_length=0)
    _check_activation(activation)
    return obs_dim, act_dim, hidden


def _finite_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def mlp(
    sizes: list[int], activation: type[nn.Module] = nn.Tanh, output_gain: float | None = None
) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end).

    With ``output_gain``, weights are orthogonal (gain sqrt 2 on hidden layers, output_gain
    on the last) and biases 0: the initialization of Stable-Baselines3 and CleanRL, where a
    policy's last layer uses 0.01 so the first actions sit near the mean of the box.

    Raises:
        TypeError: sizes that are not a sequence of ints, an activation that is not an
            nn.Module class, or an output_gain that is not a number.
        ValueError: fewer than two sizes, a size below 1, or an output_gain not finite.
    """
    sizes = _sizes(sizes, "sizes", minimum_length=2)
    _check_activation(activation)
    if output_gain is not None:
        output_gain = _finite_number(output_gain, "output_gain")
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


def _data(value: object, name: str, dtype: torch.dtype, width: int) -> torch.Tensor:
    """A tensor of shape (..., width) of real numbers in ``dtype``, finite when it is data
    (neither requiring grad nor traced by a torch.func transform)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.is_complex() or value.dtype is torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {value.dtype}")
    if value.dim() == 0 or value.shape[-1] != width:
        raise ValueError(
            f"{name} must have shape (batch, {width}) or ({width},), got {tuple(value.shape)}"
        )
    value = value.to(dtype)
    traced = value.requires_grad or torch._C._functorch.is_functorch_wrapped_tensor(value)
    if not traced and not bool(torch.isfinite(value).all()):
        bad = value[~torch.isfinite(value)].reshape(-1)[:3].tolist()
        raise ValueError(f"{name} must be finite, got values such as {bad}")
    return value


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_ENTROPY_CONSTANT = 0.5 * math.log(2 * math.pi * math.e)


class GaussianPolicy(nn.Module):
    """π(a | s) = N(μ(s), diag(exp(2 log_std))), μ an MLP (``hidden=()``: linear);
    ``ortho_init``: orthogonal weights, 0.01 on the last layer (see :func:`mlp`).

    ``log_prob`` and ``entropy`` are written out rather than built from
    torch.distributions objects: a PPO update calls them hundreds of times on small
    batches, where constructing the distribution costs as much as the arithmetic.
    ``distribution`` gives the torch.distributions object for everything else.

    Observations are (batch, obs_dim) or (obs_dim,) tensors of real numbers, cast to the
    policy's dtype; actions match them, with act_dim last.

    Raises:
        TypeError, ValueError: at construction, dimensions that are not positive integers,
            hidden sizes that are not, a log_std_init that is not a finite number or an
            activation that is not an nn.Module class; at a call, observations or actions
            of the wrong shape, not real, or (as data, outside autograd) not finite.
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
        (obs_dim,) = _sizes([obs_dim], "obs_dim", minimum_length=1)
        (act_dim,) = _sizes([act_dim], "act_dim", minimum_length=1)
        hidden = _sizes(hidden, "hidden", minimum_length=0)
        log_std_init = _finite_number(log_std_init, "log_std_init")
        _check_activation(activation)
        self.mean = mlp(
            [obs_dim, *hidden, act_dim], activation, output_gain=0.01 if ortho_init else None
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def _inputs(
        self, obs: object, *actions: object, checked: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """obs (and actions) checked and cast to the policy's dtype (see the class doc);
        ``checked``: they are a rollout's, already checked and cast, and pass as they are."""
        if checked:
            return (obs, *actions)
        first = self.mean[0]
        dtype = first.weight.dtype  # the networks' (theta's, under functional_call)
        obs = _data(obs, "obs", dtype, first.in_features)
        if not actions:
            return (obs,)
        actions = _data(actions[0], "actions", dtype, self.log_std.shape[-1])
        if actions.shape[:-1] != obs.shape[:-1]:
            raise ValueError(
                f"actions {tuple(actions.shape)} must match obs "
                f"{tuple(obs.shape)} but for the last dimension"
            )
        return obs, actions

    def distribution(self, obs: torch.Tensor) -> Independent:
        """The distribution of the (unsquashed) Gaussian at observations (batch, obs_dim)."""
        (obs,) = self._inputs(obs)
        return Independent(Normal(self.mean(obs), torch.exp(self.log_std)), 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The distribution's parameters at observations (batch, obs_dim): the mean
        (batch, act_dim) and the log standard deviation (act_dim,)."""
        (obs,) = self._inputs(obs)
        return self.mean(obs), self.log_std

    def log_prob_given(
        self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """log π(actions) under the distribution with these parameters, shape (batch,):
        for functions of the parameters (the KL and surrogate of natural gradients)."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - _LOG_SQRT_2PI).sum(-1)

    def log_prob(
        self, obs: torch.Tensor, actions: torch.Tensor, checked: bool = False
    ) -> torch.Tensor:
        """log π(actions | obs), shape (batch,); ``checked``: the inputs are a rollout's, known
        to be finite, of the right shape and dtype (the update's hot path skips the checks)."""
        obs, actions = self._inputs(obs, actions, checked=checked)
        return self.log_prob_given(self.mean(obs), self.log_std, actions)

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor, checked: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(actions | obs) and the entropy of π(· | obs), both (batch,); ``checked`` as
        for :meth:`log_prob`."""
        log_prob = self.log_prob(obs, actions, checked)
        entropy = (self.log_std + _ENTROPY_CONSTANT).sum().expand_as(log_prob)
        return log_prob, entropy

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Actions (batch, act_dim): the mean, or a draw using ``generator``."""
        (obs,) = self._inputs(obs)
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
        self, obs: torch.Tensor, actions: torch.Tensor, checked: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_prob = self.log_prob(obs, actions, checked)
        return log_prob, -log_prob

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return torch.tanh(super().sample(obs, deterministic, generator))


class StateDependentGaussianPolicy(HeldExploration, GaussianPolicy):
    """π(a | s) = N(μ(s), diag Σ_j φ_j(s)² σ_j²) with generalized state-dependent exploration
    (gSDE, Stable-Baselines3's ``use_sde``; see :mod:`probcalc.rl.sde`): φ(s) are the last
    hidden layer's outputs (the observation for ``hidden=()``), read detached as
    Stable-Baselines3's on-policy gSDE does, and ``log_std`` = log σ is a (n_features,
    act_dim) parameter, all ``log_std_init`` at the start.

    While training, :meth:`sample` adds φ(s) W with one matrix W ~ N(0, σ²) per environment,
    held between calls of :meth:`reset_noise`; ``forward`` gives the state-dependent
    log standard deviation (batch, act_dim) of the action for a fresh W, from which the
    log-probabilities, entropies, KL divergences and Fisher products are computed exactly
    as for :class:`GaussianPolicy`.

    Raises:
        TypeError, ValueError: as :class:`GaussianPolicy`.
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
        super().__init__(obs_dim, act_dim, hidden, log_std_init, ortho_init, activation)
        n_features = self.mean[-1].in_features
        self.log_std = nn.Parameter(torch.full((n_features, act_dim), float(log_std_init)))

    def features_and_mean(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """φ(s) (batch, n_features) and μ(s) (batch, act_dim) at checked observations."""
        features = obs
        for layer in itertools.islice(self.mean, len(self.mean) - 1):
            features = layer(features)
        return features, self.mean[-1](features)

    def _mean_and_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, mean = self.features_and_mean(obs)
        return mean, sde_log_std(features.detach(), self.log_std)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean (batch, act_dim) and the state-dependent log standard deviation of the
        action (batch, act_dim) at observations (batch, obs_dim)."""
        (obs,) = self._inputs(obs)
        return self._mean_and_log_std(obs)

    def distribution(self, obs: torch.Tensor) -> Independent:
        mean, log_std = self(obs)
        return Independent(Normal(mean, torch.exp(log_std)), 1)

    def log_prob(
        self, obs: torch.Tensor, actions: torch.Tensor, checked: bool = False
    ) -> torch.Tensor:
        obs, actions = self._inputs(obs, actions, checked=checked)
        return self.log_prob_given(*self._mean_and_log_std(obs), actions)

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor, checked: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs, actions = self._inputs(obs, actions, checked=checked)
        mean, log_std = self._mean_and_log_std(obs)
        entropy = (log_std + _ENTROPY_CONSTANT).sum(-1)
        return self.log_prob_given(mean, log_std, actions), entropy

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Actions (batch, act_dim): the mean, or the mean plus φ(s) W with the held
        matrices when there is one per observation, else a fresh draw with ``generator``."""
        (obs,) = self._inputs(obs)
        features, mean = self.features_and_mean(obs)
        if deterministic:
            return mean
        log_std = sde_log_std(features, self.log_std)
        return mean + self.exploration_noise(features, log_std, generator)


class SquashedStateDependentPolicy(SquashedGaussianPolicy, StateDependentGaussianPolicy):
    """a = tanh(u), u from :class:`StateDependentGaussianPolicy` (gSDE), with the log-density
    of :class:`SquashedGaussianPolicy`."""


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # Stable-Baselines3's and CleanRL's bounds for SAC


SDE_CLIP_MEAN = 2.0  # Stable-Baselines3's clip_mean: with gSDE, μ(s) is clipped to [-2, 2]


class TanhGaussianActor(HeldExploration, nn.Module):
    """SAC's policy: a = tanh(u), u ~ N(μ(s), diag σ(s)²), both the mean and the log
    standard deviation outputs of one network (a shared trunk of ``hidden`` layers, then
    two linear heads; ``hidden=()``: both linear in s), log σ clamped to [-20, 2].

    With ``use_sde``, as Stable-Baselines3's SAC: σ(s)² = Σ_j φ_j(s)² σ_j², φ(s) the trunk's
    output (trained through this too), ``log_std`` a (n_features, act_dim) parameter starting
    at ``log_std_init``, μ(s) clipped to [-2, 2]; :meth:`sample` adds φ(s) W with the
    matrices held by :meth:`reset_noise` (see :mod:`probcalc.rl.sde`).

    ``distribution`` is torch's TransformedDistribution with a TanhTransform that caches its
    input, so ``log_prob`` of a draw reuses u: log π(a) = log N(u) - Σ log(1 - tanh(u)²),
    stable for |u| large (the inverse tanh of a = ±1 is never taken).

    Raises:
        TypeError, ValueError: as :class:`GaussianPolicy` at construction and at a call.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3.0,
    ) -> None:
        super().__init__()
        obs_dim, act_dim, hidden = checked_network_sizes(obs_dim, act_dim, hidden, activation)
        log_std_init = _finite_number(log_std_init, "log_std_init")
        trunk = mlp([obs_dim, *hidden], activation) if hidden else nn.Sequential()
        if hidden:
            trunk.append(activation())
        self.trunk = trunk
        width = hidden[-1] if hidden else obs_dim
        self.mean = nn.Linear(width, act_dim)
        self.use_sde = bool(use_sde)
        if self.use_sde:
            self.log_std = nn.Parameter(torch.full((width, act_dim), log_std_init))
        else:
            self.log_std = nn.Linear(width, act_dim)
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def _features_and_parameters(
        self, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        if self.use_sde:
            mean = self.mean(features).clamp(-SDE_CLIP_MEAN, SDE_CLIP_MEAN)
            return features, mean, sde_log_std(features, self.log_std)
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return features, self.mean(features), log_std

    def parameters_of(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(s) and the log σ(s) (clamped, or gSDE's), each (batch, act_dim), for
        observations known to be checked (a replay buffer's)."""
        _, mean, log_std = self._features_and_parameters(obs)
        return mean, log_std

    def distribution(self, obs: torch.Tensor, checked: bool = False) -> TransformedDistribution:
        """π(· | s) at observations (batch, obs_dim): batch shape (batch,), event (act_dim,).
        ``checked``: the observations are known to be finite of the right shape."""
        if not checked:
            obs = _data(obs, "obs", self.mean.weight.dtype, self.obs_dim)
        mean, log_std = self.parameters_of(obs)
        base = Independent(Normal(mean, log_std.exp(), validate_args=False), 1)
        return TransformedDistribution(base, [TanhTransform(cache_size=1)], validate_args=False)

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Actions (batch, act_dim) in (-1, 1): tanh of the mean, or of a draw using
        ``generator`` (with ``use_sde``, the held matrices' noise when there is one per
        observation)."""
        obs = _data(obs, "obs", self.mean.weight.dtype, self.obs_dim)
        features, mean, log_std = self._features_and_parameters(obs)
        if deterministic:
            return torch.tanh(mean)
        if self.use_sde:
            return torch.tanh(mean + self.exploration_noise(features, log_std, generator))
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return torch.tanh(mean + log_std.exp() * noise)


class DeterministicActor(nn.Module):
    """DDPG's and TD3's policy a = μ(s) = tanh(f(s)), in [-1, 1], f an MLP (``hidden=()``:
    f(s) = W s + b, near-linear where |W s + b| is small). The tanh keeps the actions where
    the critics were trained: the actor's gradient never reads a critic outside [-1, 1].

    ``distribution`` is the point mass at μ(s) (:class:`probcalc.mc.PointMass`), through
    which the pathwise estimator gives the deterministic policy gradient.

    Raises:
        TypeError, ValueError: as :class:`GaussianPolicy` at construction and at a call.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        obs_dim, act_dim, hidden = checked_network_sizes(obs_dim, act_dim, hidden, activation)
        self.mean = mlp([obs_dim, *hidden, act_dim], activation)
        self.mean.append(nn.Tanh())
        self.obs_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """μ(s), (batch, act_dim), for observations known to be checked."""
        return self.mean(obs)

    def distribution(self, obs: torch.Tensor, checked: bool = False) -> PointMass:
        """The point mass at μ(s): batch shape (batch,), event (act_dim,)."""
        if not checked:
            obs = _data(obs, "obs", self.mean[0].weight.dtype, self.obs_dim)
        return PointMass(self.mean(obs), event_dim=1)

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """μ(s), (batch, act_dim) (exploration noise is the agent's)."""
        return self.mean(_data(obs, "obs", self.mean[0].weight.dtype, self.obs_dim))
