"""Constrained parameters for the samplers: the user names each coordinate's (or block's)
support with torch.distributions.constraints, and the chains move on an unconstrained space
z with x = T(z), T = torch's ``biject_to(constraint)`` block by block, sampling the density
log p(T(z)) + log|det T'(z)| (the change of variables of Stan, PyMC and NumPyro).

torch has no constraint for increasing vectors, so :data:`ordered_vector` and its bijection
(x_0 = z_0, x_i = x_{i-1} + exp(z_i), as Stan's ordered type) are defined here and
registered with ``biject_to``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import Transform

__all__ = ["ChangeOfVariables", "OrderedTransform", "change_of_variables", "ordered_vector"]


class _OrderedVector(constraints.Constraint):
    """Vectors with strictly increasing entries, x_0 < x_1 < ... (event_dim 1)."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value[..., 1:] > value[..., :-1]).all(dim=-1)

    def __repr__(self) -> str:
        return "OrderedVector()"


ordered_vector = _OrderedVector()


class OrderedTransform(Transform):
    """x = T(z) with x_0 = z_0 and x_i = x_{i-1} + exp(z_i): the real vectors onto the
    increasing ones; log|det T'(z)| = sum_{i >= 1} z_i."""

    domain = constraints.real_vector
    codomain = ordered_vector
    bijective = True
    sign = +1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderedTransform)

    def __hash__(self) -> int:
        return hash(OrderedTransform)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        increments = torch.cat([z[..., :1], z[..., 1:].exp()], dim=-1)
        return increments.cumsum(dim=-1)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., :1], (x[..., 1:] - x[..., :-1]).log()], dim=-1)

    def log_abs_det_jacobian(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return z[..., 1:].sum(dim=-1)


biject_to.register(_OrderedVector)(lambda constraint: OrderedTransform())

# The names laplace.fit takes, accepted here too.
NAMED_SUPPORTS: dict[str, constraints.Constraint] = {
    "real": constraints.real,
    "positive": constraints.positive,
    "unit": constraints.unit_interval,
    "simplex": constraints.simplex,
    "ordered": ordered_vector,
}

Support = constraints.Constraint | str | None
Constraints = Support | Sequence[Support | tuple[Support, int]]


@dataclass(frozen=True)
class _Block:
    """Coordinates [start, stop) of x, on [z_start, z_stop) of z, with their support."""

    constraint: constraints.Constraint
    transform: Transform
    start: int
    stop: int
    z_start: int
    z_stop: int

    @property
    def elementwise(self) -> bool:
        return self.transform.domain.event_dim == 0


@dataclass(frozen=True)
class ChangeOfVariables:
    """x = T(z) block by block, with z of size ``dim_unconstrained`` and x of size ``dim``.

    Attributes:
        dim: d, the size of the user's (constrained) points.
        dim_unconstrained: the size of z (a simplex of k coordinates has k - 1).
        blocks: each block's support and its coordinates on both scales.
    """

    dim: int
    dim_unconstrained: int
    blocks: tuple[_Block, ...]

    @property
    def is_identity(self) -> bool:
        """Whether every coordinate is unconstrained (then x = z)."""
        return all(block.constraint is constraints.real for block in self.blocks)

    def to_constrained(self, z: torch.Tensor) -> torch.Tensor:
        """x = T(z) for z of shape (..., dim_unconstrained); returns (..., dim)."""
        if self.is_identity:
            return z
        parts = [b.transform(z[..., b.z_start : b.z_stop]).to(z.dtype) for b in self.blocks]
        return torch.cat(parts, dim=-1)

    def to_unconstrained(self, x: torch.Tensor) -> torch.Tensor:
        """z = T^{-1}(x) for x of shape (..., dim); returns (..., dim_unconstrained)."""
        if self.is_identity:
            return x
        parts = [b.transform.inv(x[..., b.start : b.stop]) for b in self.blocks]
        return torch.cat(parts, dim=-1)

    def log_abs_det_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """log|det T'(z)| for z of shape (..., dim_unconstrained); returns (...)."""
        return self.constrained_and_log_jacobian(z)[1]

    def constrained_and_log_jacobian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = T(z) and log|det T'(z)| in one pass over the blocks (each bijection runs
        once): z (..., dim_unconstrained) -> ((..., dim), (...))."""
        parts = []
        total = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for b in self.blocks:
            zb = z[..., b.z_start : b.z_stop]
            if b.constraint is constraints.real:
                parts.append(zb)
                continue
            xb = b.transform(zb).to(z.dtype)  # bounds of another dtype must not promote
            parts.append(xb)
            terms = b.transform.log_abs_det_jacobian(zb, xb).to(z.dtype)
            total = total + terms.reshape(*z.shape[:-1], -1).sum(dim=-1)
        return torch.cat(parts, dim=-1), total

    def log_density(
        self, log_prob: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """z -> log_prob(T(z)) + log|det T'(z)|: the density the chains sample on z."""
        if self.is_identity:
            return log_prob

        def on_unconstrained(z: torch.Tensor) -> torch.Tensor:
            x, log_jacobian = self.constrained_and_log_jacobian(z)
            return log_prob(x) + log_jacobian

        return on_unconstrained

    def check_inside(self, x: torch.Tensor, name: str = "init") -> torch.Tensor:
        """z = T^{-1}(x) for start points x (chains, dim), after checking that each block
        lies inside its support and maps to finite z.

        Raises:
            ValueError: a block outside its support or on its boundary, named with the
                chain, the coordinates and the values.
        """
        for b in self.blocks:
            if b.constraint is constraints.real:
                continue
            xb = x[..., b.start : b.stop]
            try:
                inside = b.constraint.check(xb)
            except RuntimeError as error:
                raise ValueError(
                    f"constraints: {b.constraint} cannot be checked on coordinates "
                    f"{b.start}..{b.stop - 1} ({error})"
                ) from None
            # strictly inside: torch's interval checks include the ends, and its sigmoid's
            # inverse clamps them to a finite z
            lower = getattr(b.constraint, "lower_bound", None)
            upper = getattr(b.constraint, "upper_bound", None)
            if lower is not None:
                inside = inside & (xb > lower)
            if upper is not None:
                inside = inside & (xb < upper)
            inside = inside.reshape(xb.shape[0], -1).all(dim=-1)
            z = b.transform.inv(xb)
            finite = torch.isfinite(z).reshape(xb.shape[0], -1).all(dim=-1)
            for c in range(xb.shape[0]):
                if not bool(inside[c]) or not bool(finite[c]):
                    raise ValueError(
                        f"{name}[{c}] coordinates {b.start}..{b.stop - 1} = {xb[c].tolist()} "
                        f"are outside or on the boundary of their support {b.constraint}; "
                        f"start every chain strictly inside it"
                    )
        return self.to_unconstrained(x)


def _as_constraint(entry: object, what: str) -> constraints.Constraint:
    if entry is None:
        return constraints.real
    if isinstance(entry, str):
        if entry not in NAMED_SUPPORTS:
            raise ValueError(
                f"{what}: unknown support {entry!r}; valid names: {sorted(NAMED_SUPPORTS)}, or "
                f"any torch.distributions.constraints object that biject_to maps to"
            )
        return NAMED_SUPPORTS[entry]
    if not isinstance(entry, constraints.Constraint):
        raise TypeError(
            f"{what}: expected a torch.distributions.constraints object, a name "
            f"{sorted(NAMED_SUPPORTS)} or None, got {type(entry).__name__} {entry!r}"
        )
    if entry.is_discrete:
        raise ValueError(f"{what}: {entry} is discrete; the samplers need continuous supports")
    if type(entry).__name__ in ("_Cat", "_Stack"):
        raise ValueError(
            f"{what}: give the blocks of {type(entry).__name__[1:].lower()} as a sequence of "
            f"supports and (support, size) pairs instead"
        )
    return entry


def _bijection(constraint: constraints.Constraint, what: str) -> Transform:
    if constraint is constraints.real:
        return biject_to(constraint)
    try:
        transform = biject_to(constraint)
    except NotImplementedError:
        raise ValueError(
            f"{what}: torch's biject_to has no bijection onto {constraint}; write log_prob on "
            f"an unconstrained parameter instead"
        ) from None
    if transform.domain.event_dim > 1 or transform.codomain.event_dim > 1:
        raise ValueError(
            f"{what}: {constraint} is a support of matrices; the samplers take vectors: pass "
            f"its unconstrained parameters and build the matrix in log_prob"
        )
    return transform


def change_of_variables(spec: Constraints, dim: int) -> ChangeOfVariables:
    """The change of variables that ``constraints=`` names for points of size ``dim``.

    Args:
        spec: None (every coordinate real); one support for the whole vector (a
            torch.distributions.constraints object such as ``positive``, ``simplex`` or
            ``interval(0, 2)``, :data:`ordered_vector`, or a name "real", "positive",
            "unit", "simplex", "ordered"); or a sequence of blocks in order, each a support of
            one coordinate or a pair ``(support, size)`` of ``size`` coordinates, the sizes
            adding up to ``dim``.
        dim: d.

    Returns:
        The ChangeOfVariables.

    Raises:
        TypeError: an entry that is not a support, a name or a pair.
        ValueError: an unknown name, a discrete support, one biject_to cannot map to, a
            support of matrices, a vector support (simplex, ordered) given for one
            coordinate, or sizes that do not add up to ``dim``.
    """
    if spec is None or isinstance(spec, str | constraints.Constraint):
        entries: list[tuple[object, int]] = [(spec, dim)]
    elif isinstance(spec, Sequence):
        entries = []
        for i, entry in enumerate(spec):
            if isinstance(entry, tuple):
                if (
                    len(entry) != 2
                    or not isinstance(entry[1], numbers.Integral)
                    or isinstance(entry[1], bool)
                    or entry[1] < 1
                ):
                    raise ValueError(
                        f"constraints[{i}]: a block is a pair (support, size) with an int "
                        f"size >= 1, got {entry!r}"
                    )
                entries.append((entry[0], int(entry[1])))
            else:
                entries.append((entry, 1))
    else:
        raise TypeError(
            f"constraints must be None, one support for every coordinate, or a sequence of "
            f"supports and (support, size) blocks, got {type(spec).__name__} {spec!r}"
        )
    total = sum(size for _, size in entries)
    if total != dim:
        raise ValueError(
            f"constraints name {total} coordinates but the points have d = {dim}; give each "
            f"block's size as (support, size)"
        )
    blocks = []
    start = z_start = 0
    for i, (entry, size) in enumerate(entries):
        what = "constraints" if len(entries) == 1 else f"constraints[{i}]"
        constraint = _as_constraint(entry, what)
        transform = _bijection(constraint, what)
        if transform.domain.event_dim == 1:
            z_size = int(transform.inverse_shape(torch.Size([size]))[-1])
            if z_size < 1:
                raise ValueError(
                    f"{what}: {constraint} of {size} coordinate(s) leaves nothing to sample; "
                    f"give it a block of at least 2 coordinates as ({constraint}, size)"
                )
        else:
            z_size = size
        try:
            shape = transform(torch.zeros(z_size)).shape
        except RuntimeError as error:
            raise ValueError(
                f"{what}: {constraint} does not fit a block of {size}: {error}"
            ) from None
        if tuple(shape) != (size,):
            raise ValueError(
                f"{what}: {constraint} maps {z_size} unconstrained coordinate(s) to shape "
                f"{tuple(shape)}, not to its block of {size}; check the bounds' shapes"
            )
        blocks.append(_Block(constraint, transform, start, start + size, z_start, z_start + z_size))
        start, z_start = start + size, z_start + z_size
    return ChangeOfVariables(dim=dim, dim_unconstrained=z_start, blocks=tuple(blocks))
