"""The six Genz (1984) test-integrand families on the unit cube [0, 1]^d, with closed forms.

Each family is a frozen dataclass holding a difficulty/shape vector ``a`` and a shift vector ``w``
(float64 numpy arrays of shape (d,), read-only). Calling it on a torch tensor of shape (n, d)
returns the n integrand values, vectorized and differentiable by autograd; ``exact()`` returns
the integral over [0, 1]^d as a Python float, computed in closed form:

=================  ==============================================  ==========================
name               f(x)                                            Σ a_i (``make_family``)
=================  ==============================================  ==========================
oscillatory        cos(2π w_1 + Σ a_i x_i)                         2.0 · d
product_peak       ∏ 1 / (a_i^-2 + (x_i - w_i)^2)                  2.5 · d
corner_peak        (1 + Σ a_i x_i)^-(d+1)                          0.6 · d
gaussian           exp(-Σ a_i^2 (x_i - w_i)^2)                     2.0 · d
continuous         exp(-Σ a_i |x_i - w_i|)                         2.0 · d
discontinuous      exp(Σ a_i x_i) if x_1 <= w_1 and x_2 <= w_2,    1.0 · d
                   else 0 (for d = 1: if x_1 <= w_1, else 0)
=================  ==============================================  ==========================

The continuous family has kinks along the hyperplanes x_i = w_i, the discontinuous one jumps
along x_1 = w_1 and x_2 = w_2; w_2, ..., w_d of the oscillatory family, w of the corner peak and
w_3, ..., w_d of the discontinuous family are drawn but unused.

``make_family(name, d, seed)`` draws w uniform in [0, 1]^d (w_1, w_2 uniform in [0.2, 0.8] for the
discontinuous family, so both jumps lie well inside the cube) and a_i uniform in [0, 1], rescaled
so that Σ a_i equals the total in the table. These totals are deliberately milder than the
difficulty levels Genz published: they are meant for checking an adaptive integrator to a
relative error of 1e-10 for d <= 3 and 1e-8 at d = 5, not for stress-testing it. With them a_i is
about 2 to 2.5 on average for the peaked families (peak half-widths about 0.4; single a_i range
from near 0 to a few times the mean), the oscillatory integrand makes about d/3 periods across
the cube, and the corner peak ranges over about a factor (1 + 0.6 d)^(d+1).

The oscillatory integral can be arbitrarily close to zero, so a and then w_1 are redrawn (from the
same seeded generator, so still deterministic) until |exact| > 0.05, so that a relative error is
meaningful; at Σ a_i = 2 d this is possible only up to d ≈ 10, beyond which ``make_family``
raises ValueError.

Every family also exposes ``name``, ``d``, ``smooth`` (False for continuous and discontinuous) and
``breakpoints``: for each coordinate, the interior points where f has a kink or jump along it
(the kinks and jumps are the hyperplanes x_i = w_i), so a test can split the cube there.

>>> f = make_family("gaussian", d=2, seed=0)
>>> f.name, f.d, f.breakpoints
('gaussian', 2, ((), ()))
>>> round(float(f.a.sum()), 12)
4.0
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from itertools import product
from typing import ClassVar

import numpy as np
import scipy.special
import torch

FAMILIES = (
    "oscillatory",
    "product_peak",
    "corner_peak",
    "gaussian",
    "continuous",
    "discontinuous",
)

# Σ a_i per unit of dimension, for make_family (see the module docstring).
DIFFICULTY_PER_DIMENSION = {
    "oscillatory": 2.0,
    "product_peak": 2.5,
    "corner_peak": 0.6,
    "gaussian": 2.0,
    "continuous": 2.0,
    "discontinuous": 1.0,
}

# make_family keeps |exact| of the oscillatory family above this, redrawing a and w_1.
OSCILLATORY_MIN_ABS_INTEGRAL = 0.05


@dataclass(frozen=True, eq=False)
class GenzFamily(ABC):
    """Common part of the six families: parameters a, w of shape (d,) and input checking."""

    a: np.ndarray
    w: np.ndarray

    name: ClassVar[str]
    smooth: ClassVar[bool] = True

    def __post_init__(self) -> None:
        a = np.array(self.a, dtype=np.float64)
        w = np.array(self.w, dtype=np.float64)
        if a.ndim != 1 or a.shape != w.shape or a.size == 0:
            raise ValueError(
                f"a and w must be 1-D of the same length d >= 1, got {a.shape}, {w.shape}"
            )
        if not (np.all(a > 0) and np.all(np.isfinite(a))):
            raise ValueError(f"a must be positive and finite, got {a}")
        a.flags.writeable = False
        w.flags.writeable = False
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "w", w)

    @property
    def d(self) -> int:
        """The dimension."""
        return self.a.size

    @property
    def breakpoints(self) -> tuple[tuple[float, ...], ...]:
        """For each coordinate, the interior points of [0, 1] where f has a kink or jump."""
        return ((),) * self.d

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f at the rows of x, shape (n, d) -> (n,)."""
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {tuple(x.shape)}")
        # torch.tensor copies (torch.as_tensor warns about sharing the read-only arrays)
        a = torch.tensor(self.a.tolist(), dtype=x.dtype, device=x.device)
        w = torch.tensor(self.w.tolist(), dtype=x.dtype, device=x.device)
        return self._evaluate(x, a, w)

    @abstractmethod
    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """f at the rows of x with the parameters as tensors."""

    @abstractmethod
    def exact(self) -> float:
        """The integral of f over [0, 1]^d."""


@dataclass(frozen=True, eq=False)
class Oscillatory(GenzFamily):
    """f(x) = cos(2π w_1 + Σ a_i x_i); only w_1 is used.

    The integral is Re[exp(i 2π w_1) ∏_j (exp(i a_j) - 1) / (i a_j)]. Since
    (exp(i a) - 1) / (i a) = exp(i a / 2) sin(a / 2) / (a / 2), this is
    cos(2π w_1 + Σ a_j / 2) ∏_j sin(a_j / 2) / (a_j / 2), which has no cancellation for small a_j.
    """

    name: ClassVar[str] = "oscillatory"

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.cos(2.0 * math.pi * w[0] + x @ a)

    def exact(self) -> float:
        phase = 2.0 * math.pi * self.w[0] + 0.5 * self.a.sum()
        # np.sinc(t) = sin(πt) / (πt), so np.sinc(a / 2π) = sin(a / 2) / (a / 2)
        return float(math.cos(phase) * np.prod(np.sinc(self.a / (2.0 * math.pi))))


@dataclass(frozen=True, eq=False)
class ProductPeak(GenzFamily):
    """f(x) = ∏_i 1 / (a_i^-2 + (x_i - w_i)^2).

    Integral: ∏_i a_i (arctan(a_i (1 - w_i)) + arctan(a_i w_i)), since an antiderivative of
    1 / (a^-2 + (t - w)^2) is a arctan(a (t - w)).
    """

    name: ClassVar[str] = "product_peak"

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.prod(1.0 / (a**-2 + (x - w) ** 2), dim=1)

    def exact(self) -> float:
        a, w = self.a, self.w
        return float(np.prod(a * (np.arctan(a * (1.0 - w)) + np.arctan(a * w))))


@dataclass(frozen=True, eq=False)
class CornerPeak(GenzFamily):
    """f(x) = (1 + Σ a_i x_i)^-(d+1); w is not used.

    Integrating one coordinate at a time (∫_0^1 (c + a t)^-(k+1) dt = (c^-k - (c + a)^-k) / (k a))
    gives, by inclusion–exclusion over the corners v of the cube,
    1 / (d! ∏ a_i) Σ_{v ∈ {0,1}^d} (-1)^|v| / (1 + a·v).
    The alternating sum cancels badly when some a_i is small, so it is evaluated in exact rational
    arithmetic on the float64 parameters and rounded once: the result is the correctly rounded
    integral of the float64-parameter integrand. (2^d terms: fine for the d of a test suite.)
    """

    name: ClassVar[str] = "corner_peak"

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (1.0 + x @ a) ** -(self.d + 1)

    def exact(self) -> float:
        a = [Fraction(float(ai)) for ai in self.a]
        total = Fraction(0)
        for corner in product((0, 1), repeat=self.d):
            denominator = 1 + sum(ai for ai, vi in zip(a, corner, strict=True) if vi)
            total += (-1) ** sum(corner) / denominator
        return float(total / (math.factorial(self.d) * math.prod(a)))


@dataclass(frozen=True, eq=False)
class Gaussian(GenzFamily):
    """f(x) = exp(-Σ a_i^2 (x_i - w_i)^2).

    Integral: ∏_i (√π / (2 a_i)) (erf(a_i (1 - w_i)) + erf(a_i w_i)).
    """

    name: ClassVar[str] = "gaussian"

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.sum(a**2 * (x - w) ** 2, dim=1))

    def exact(self) -> float:
        a, w = self.a, self.w
        erf = scipy.special.erf
        return float(np.prod(math.sqrt(math.pi) / (2.0 * a) * (erf(a * (1.0 - w)) + erf(a * w))))


@dataclass(frozen=True, eq=False)
class Continuous(GenzFamily):
    """f(x) = exp(-Σ a_i |x_i - w_i|): continuous, with a kink along each hyperplane x_i = w_i.

    Integral: ∏_i (2 - exp(-a_i w_i) - exp(-a_i (1 - w_i))) / a_i, evaluated with expm1.
    """

    name: ClassVar[str] = "continuous"
    smooth: ClassVar[bool] = False

    @property
    def kinks(self) -> np.ndarray:
        """x_i = kinks[i] are the hyperplanes where f is not differentiable (this is w)."""
        return self.w

    @property
    def breakpoints(self) -> tuple[tuple[float, ...], ...]:
        return tuple((float(wi),) for wi in self.w)

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.sum(a * torch.abs(x - w), dim=1))

    def exact(self) -> float:
        a, w = self.a, self.w
        return float(np.prod(-(np.expm1(-a * w) + np.expm1(-a * (1.0 - w))) / a))


@dataclass(frozen=True, eq=False)
class Discontinuous(GenzFamily):
    """f(x) = 0 if x_1 > w_1 or x_2 > w_2 (for d = 1 only x_1 > w_1), else exp(Σ a_i x_i).

    Integral: ∏_i (exp(a_i u_i) - 1) / a_i with u_i = w_i for i = 1, 2 (only i = 1 if d = 1) and
    u_i = 1 otherwise, evaluated with expm1. w_i for i > 2 are drawn but not used.
    """

    name: ClassVar[str] = "discontinuous"
    smooth: ClassVar[bool] = False

    @property
    def jumps(self) -> np.ndarray:
        """x_i = jumps[i] are the hyperplanes where f jumps: w_1 and, if d >= 2, w_2."""
        return self.w[: min(self.d, 2)]

    @property
    def breakpoints(self) -> tuple[tuple[float, ...], ...]:
        return tuple((float(wi),) if i < 2 else () for i, wi in enumerate(self.w))

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        k = min(self.d, 2)
        inside = torch.all(x[:, :k] <= w[:k], dim=1)
        return torch.where(inside, torch.exp(x @ a), torch.zeros((), dtype=x.dtype))

    def exact(self) -> float:
        u = np.ones(self.d)
        u[:2] = self.w[:2]
        return float(np.prod(np.expm1(self.a * u) / self.a))


_CLASSES: dict[str, type[GenzFamily]] = {
    cls.name: cls
    for cls in (Oscillatory, ProductPeak, CornerPeak, Gaussian, Continuous, Discontinuous)
}


def make_family(name: str, d: int, seed: int) -> GenzFamily:
    """A member of the family ``name`` on [0, 1]^d with parameters drawn from ``seed``.

    w ~ U[0, 1]^d (w_1, w_2 ~ U[0.2, 0.8] for "discontinuous"); a_i ~ U[0, 1] rescaled so that
    Σ a_i = DIFFICULTY_PER_DIMENSION[name] · d. For "oscillatory", a and then w_1 are redrawn
    until |exact| > OSCILLATORY_MIN_ABS_INTEGRAL (ValueError for d > 10, where that is hopeless).
    The same (name, d, seed) always gives the same member.
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown Genz family {name!r}; expected one of {FAMILIES}")
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    rng = np.random.default_rng([seed, FAMILIES.index(name)])
    w = rng.uniform(0.0, 1.0, size=d)
    if name == "discontinuous":
        w[:2] = rng.uniform(0.2, 0.8, size=min(d, 2))
    total = DIFFICULTY_PER_DIMENSION[name] * d
    u = rng.uniform(0.0, 1.0, size=d)
    a = total * u / u.sum()
    if name == "oscillatory":
        a, w[0] = _oscillatory_a_and_w1(a, w[0], total, rng)
    return _CLASSES[name](a, w)


def _oscillatory_a_and_w1(
    a: np.ndarray, w1: float, total: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Redraw a, then w_1, from rng until the oscillatory integral has |exact| > 0.05.

    |exact| = |cos(2π w_1 + Σ a_j / 2)| · ∏ |sin(a_j / 2) / (a_j / 2)|. The product (the largest
    |exact| any w_1 can give) is first made > 0.1 by redrawing a: it is tiny when one a_j is near
    2π, which happens for a few percent of draws at d = 4 or 5, and typically when d >= 12, since
    it is about sin(1)^d at a_j ≈ 2. Then w_1 is redrawn until |cos(...)| is large enough.
    """
    d = a.size
    for _ in range(1000):
        amplitude = abs(np.prod(np.sinc(a / (2.0 * math.pi))))
        if amplitude > 2.0 * OSCILLATORY_MIN_ABS_INTEGRAL:
            break
        u = rng.uniform(0.0, 1.0, size=d)
        a = total * u / u.sum()
    else:
        raise ValueError(
            f"oscillatory with Σ a_i = {total} in d = {d}: its integral is too close to zero "
            "for relative errors (use d <= 10)"
        )
    while abs(Oscillatory(a, np.full(d, w1)).exact()) <= OSCILLATORY_MIN_ABS_INTEGRAL:
        w1 = rng.uniform(0.0, 1.0)
    return a, w1
