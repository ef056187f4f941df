"""A point mass δ_loc as a torch Distribution, so that the pathwise estimator covers
deterministic choices: with ``x = loc(φ)`` its "draw" is loc itself and
``pathwise_grad(f, PointMass(loc), 1)`` is ``f(loc(φ))`` with its exact gradient (the
deterministic policy gradient of DDPG and TD3). torch.distributions has no point mass
(Pyro's ``Delta`` is the same idea), hence this small class."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.distributions import Distribution, constraints

__all__ = ["PointMass"]


class PointMass(Distribution):
    """δ_loc: every draw equals ``loc``, and ``rsample`` keeps its gradient.

    Args:
        loc: the point, shape ``(*batch_shape, *event_shape)``, real.
        event_dim: how many trailing dimensions of loc form one event (0: scalars).
        validate_args: as torch.distributions' (checks loc is real and finite-or-not).

    Raises:
        TypeError: loc is not a floating-point tensor.
        ValueError: event_dim is negative or larger than loc's dimensions.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"loc": constraints.real}
    has_rsample = True

    def __init__(
        self, loc: torch.Tensor, event_dim: int = 0, validate_args: bool | None = None
    ) -> None:
        if not isinstance(loc, torch.Tensor) or not loc.is_floating_point():
            raise TypeError(f"loc must be a floating-point tensor, got {loc!r:.60}")
        if isinstance(event_dim, bool) or not isinstance(event_dim, int):
            raise TypeError(f"event_dim must be an int, got {event_dim!r}")
        if not 0 <= event_dim <= loc.dim():
            raise ValueError(f"event_dim must lie in [0, {loc.dim()}], got {event_dim}")
        self.loc = loc
        split = loc.dim() - event_dim
        super().__init__(loc.shape[:split], loc.shape[split:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def expand(self, batch_shape: torch.Size, _instance: PointMass | None = None) -> PointMass:
        shape = torch.Size(batch_shape) + self.event_shape
        return PointMass(self.loc.expand(shape), len(self.event_shape), validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """``loc`` expanded to ``sample_shape + loc.shape`` (differentiable)."""
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """0 where value equals loc (all of an event), -inf elsewhere."""
        if self._validate_args:
            self._validate_sample(value)
        equal = value == self.loc
        if self.event_shape:
            equal = equal.flatten(-len(self.event_shape)).all(-1)
        zero = torch.zeros((), dtype=self.loc.dtype)
        return torch.where(equal, zero, torch.full_like(zero, -torch.inf))

    def entropy(self) -> torch.Tensor:
        """0 (a point mass has no spread), of shape batch_shape."""
        return torch.zeros(self.batch_shape, dtype=self.loc.dtype)
