"""cubature over boxes, and the box form of log_integral.

Four rules, one loop each, every round ONE call of the integrand:

- "adaptive" (d <= 6): globally adaptive tensor-product Gauss-Kronrod (G10-K21 in 1-D,
  G7-K15 for d = 2..5, G4-K9 for d = 6), splitting each region along its worst axis, with
  a test for jumps and kinks between the nodes (adaptive.py); ``points`` cuts the box at
  known ones first.
- "gauss-legendre": tensor-product Gauss-Legendre of growing order n (x1.5 a round);
  the error is the change from the previous order.
- "sparse" (d up to about 12): Smolyak sparse grids built on Gauss-Legendre rules of
  2i - 1 points at level i (the combination technique), of growing level.
- "qmc" (any d): scrambled Sobol points (torch.quasirandom.SobolEngine), 16 independent
  scrambles; the error is their standard error, doubling the points a round.

Infinite limits by per-axis maps: [a, ∞) x = a + z/(1-z); (-∞, b] x = b - (1-z)/z;
(-∞, ∞) x = z/(1-z²) on z in (-1, 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from ..core.options import Option
from ..core.random import Seed, check_seed, integer_seed
from ..core.results import IntegrationResult
from ._checks import (
    Breakpoints,
    Integrand,
    as_batched,
    as_limit,
    check_breakpoints,
    check_integrand,
    check_tolerances,
    default_rtol,
    evaluate_checked,
    finish,
)
from ._checks import resolve_dtype_device as _resolve
from .adaptive import ProductKronrodRule, default_gauss_order, finite_or_zero, integrate_adaptive
from .rules import gauss_legendre
from .sequence import Rule, refine_rules
from .sparse import product_rule, smolyak

__all__ = ["CubatureRule", "cubature", "log_cubature"]

_QMC_SCRAMBLES = 16
_ADAPTIVE_MAX_DIM = 6


class CubatureRule(Option):
    """The rules of :func:`cubature`."""

    ADAPTIVE = "adaptive"  # globally adaptive product Gauss-Kronrod, d <= 6
    GAUSS_LEGENDRE = "gauss-legendre"  # tensor-product Gauss-Legendre of growing order
    SPARSE = "sparse"  # Smolyak sparse grid of growing level, d up to about 12
    QMC = "qmc"  # randomized quasi-Monte Carlo (scrambled Sobol), any d


class _BoxMap:
    """Per-axis maps from reference coordinates z to x, with the Jacobian's product."""

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor) -> None:
        flip = lower > upper
        self.sign = -1.0 if int(flip.sum()) % 2 else 1.0
        self.lower = torch.where(flip, upper, lower)
        self.upper = torch.where(flip, lower, upper)
        self.low_inf, self.up_inf = torch.isinf(self.lower), torch.isinf(self.upper)
        self.both = self.low_inf & self.up_inf
        # z-box: [0, 1] per axis, [-1, 1] where both limits are infinite
        self.z_lower = torch.where(self.both, -1.0, 0.0).to(lower.dtype)
        self.z_upper = torch.ones_like(self.z_lower)

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, d) and the Jacobian determinant (N,) at reference points z (N, d)."""
        if not bool((self.low_inf | self.up_inf).any()):  # a finite box: one affine map
            width = self.upper - self.lower
            return self.lower + width * z, width.prod().expand(z.shape[0])
        lo = torch.where(self.low_inf, torch.zeros_like(self.lower), self.lower)
        hi = torch.where(self.up_inf, torch.zeros_like(self.upper), self.upper)
        finite_x, finite_j = lo + (hi - lo) * z, (hi - lo).expand_as(z)
        upper_x, upper_j = lo + z / (1 - z), 1 / (1 - z) ** 2
        lower_x, lower_j = hi - (1 - z) / z, 1 / z**2
        both_x, both_j = z / (1 - z**2), (1 + z**2) / (1 - z**2) ** 2
        x = torch.where(
            self.both,
            both_x,
            torch.where(self.up_inf, upper_x, torch.where(self.low_inf, lower_x, finite_x)),
        )
        jacobian = torch.where(
            self.both,
            both_j,
            torch.where(self.up_inf, upper_j, torch.where(self.low_inf, lower_j, finite_j)),
        )
        return x, jacobian.prod(dim=1)

    def reference(self, axis: int, x: list[float]) -> list[float]:
        """The reference coordinates z of the points x on one axis (the inverse map)."""
        lo, hi = float(self.lower[axis]), float(self.upper[axis])
        if self.both[axis]:  # x = z / (1 - z²)
            return [2 * v / (1 + math.sqrt(1 + 4 * v * v)) for v in x]
        if self.up_inf[axis]:  # x = lo + z / (1 - z)
            return [(v - lo) / (1 + v - lo) for v in x]
        if self.low_inf[axis]:  # x = hi - (1 - z) / z
            return [1 / (1 + hi - v) for v in x]
        return [(v - lo) / (hi - lo) for v in x]

    def initial_boxes(
        self, points: Sequence[Breakpoints] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference box cut at the breakpoints: lower, upper (P, d) of the P boxes of
        the grid, and the coordinates of the cuts and faces per axis (d, E), NaN-padded."""
        d = self.lower.numel()
        if points is None:
            points = [None] * d
        elif isinstance(points, torch.Tensor) or len(points) != d:
            raise ValueError(
                f"points must be a sequence of d = {d} sequences of breakpoints (None or "
                f"[] for an axis without), got {points!r}"
            )
        edges = []
        for axis, axis_points in enumerate(points):
            inner = check_breakpoints(
                [] if axis_points is None else axis_points,
                self.lower[axis],
                self.upper[axis],
                f"points[{axis}]",
            )
            z = [float(self.z_lower[axis]), *self.reference(axis, inner), 1.0]
            edges.append(z)
        dtype, device = self.lower.dtype, self.lower.device
        lows = [torch.tensor(z[:-1], dtype=dtype, device=device) for z in edges]
        highs = [torch.tensor(z[1:], dtype=dtype, device=device) for z in edges]
        grid_low = torch.cartesian_prod(*lows).reshape(-1, d)
        grid_high = torch.cartesian_prod(*highs).reshape(-1, d)
        width = max(len(z) for z in edges)
        faces = torch.full((d, width), math.nan, dtype=dtype, device=device)
        for axis, z in enumerate(edges):
            faces[axis, : len(z)] = torch.tensor(z, dtype=dtype, device=device)
        return grid_low, grid_high, faces


def _prepare(
    lower: Sequence[float] | torch.Tensor,
    upper: Sequence[float] | torch.Tensor,
    rtol: float | None,
    atol: float,
    max_evals: int,
    device: torch.device | str | None,
) -> tuple[_BoxMap, torch.dtype, torch.device, float]:
    dtype, device = _resolve(lower, upper, device=device)
    lower_t = as_limit(lower, "lower", dtype, device)
    upper_t = as_limit(upper, "upper", dtype, device)
    if lower_t.shape != upper_t.shape:
        raise ValueError(
            f"lower and upper must have the same shape, got {tuple(lower_t.shape)} and "
            f"{tuple(upper_t.shape)}"
        )
    if lower_t.dim() != 1 or lower_t.numel() == 0:
        raise ValueError(f"lower and upper must have shape (d,), got {tuple(lower_t.shape)}")
    if bool(torch.isnan(lower_t).any() | torch.isnan(upper_t).any()):
        raise ValueError(
            f"the limits must not be NaN, got lower = {lower_t.tolist()}, "
            f"upper = {upper_t.tolist()}"
        )
    rtol = default_rtol(rtol, dtype, 1e-8)
    check_tolerances(rtol, atol, max_evals, dtype)
    return _BoxMap(lower_t, upper_t), dtype, device, rtol


class _Evaluator:
    """f at reference points: maps them, evaluates in one call, applies the Jacobian."""

    def __init__(
        self, f: Integrand, box: _BoxMap, log_space: bool, rtol: float, atol: float
    ) -> None:
        self.f, self.box, self.log_space = f, box, log_space
        self.rtol, self.atol = rtol, atol
        self.batch_shape: torch.Size | None = None

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        x, jacobian = self.box(z)
        values, shape = evaluate_checked(
            self.f, x, log_space=self.log_space, rtol=self.rtol, atol=self.atol
        )
        self.batch_shape = shape
        if self.log_space:
            return values + torch.log(jacobian)[:, None]
        return torch.where(values == 0, torch.zeros_like(values), values * jacobian[:, None])


def _run(
    f: Integrand,
    lower: Sequence[float] | torch.Tensor,
    upper: Sequence[float] | torch.Tensor,
    *,
    rtol: float | None,
    atol: float,
    max_evals: int,
    rule: str | CubatureRule,
    batched: bool,
    seed: Seed,
    device: torch.device | str | None,
    log_space: bool,
    name: str,
    points: Sequence[Breakpoints] | None = None,
) -> IntegrationResult:
    check_integrand(f, batched)
    check_seed(seed)
    rule = CubatureRule.parse(rule, name="rule")
    box, dtype, device, rtol = _prepare(lower, upper, rtol, atol, max_evals, device)
    if points is not None and rule is not CubatureRule.ADAPTIVE:
        raise ValueError(f"points needs rule='adaptive', got rule={rule.value!r}")
    start_lower, start_upper, faces = box.initial_boxes(points)
    if log_space:
        if box.sign < 0:
            raise ValueError("log_integral needs lower < upper on every axis")
        rtol, atol = max(rtol, atol), 0.0  # a tolerance on log I is relative on I
    d = box.lower.numel()
    evaluator = _Evaluator(as_batched(f, batched), box, log_space, rtol, atol)

    if rule is CubatureRule.ADAPTIVE:
        if d > _ADAPTIVE_MAX_DIM:
            raise ValueError(
                f"rule='adaptive' handles d <= {_ADAPTIVE_MAX_DIM}, got d = {d}; use "
                f"rule='sparse' (smooth integrands, d up to about 12) or rule='qmc'"
            )
        product = ProductKronrodRule(default_gauss_order(d), d, dtype, device)
        outcome = integrate_adaptive(
            lambda z, _pieces: (evaluator(z), z.shape[0]),
            product,
            lower=start_lower,
            upper=start_upper,
            pieces=torch.zeros(len(start_lower), dtype=torch.long, device=device),
            rtol=rtol,
            atol=atol,
            max_evals=max_evals,
            log_space=log_space,
            edges=faces,
        )
        total, error, n_evals = outcome.value, outcome.error, outcome.n_evals
        converged, message, shift = outcome.converged, outcome.message, outcome.log_shift
    elif rule is CubatureRule.QMC:
        total, error, n_evals, converged, message, shift = _qmc(
            evaluator, box, rtol, atol, max_evals, seed, log_space
        )
    else:
        rules = _legendre_orders(d) if rule is CubatureRule.GAUSS_LEGENDRE else _smolyak_levels(d)
        outcome = refine_rules(
            evaluator,
            _mapped(rules, box, dtype, device),
            rtol=rtol,
            atol=atol,
            max_evals=max_evals,
            log_space=log_space,
        )
        total, error, n_evals = outcome.total, outcome.error, outcome.n_evals
        converged, message, shift = outcome.converged, outcome.message, outcome.shift
    if log_space:
        value, error = torch.log(total) + shift, error / total.detach()
    else:
        value = box.sign * total
    return finish(value, error, n_evals, converged, message, evaluator.batch_shape, name)


# --------------------------------------------------------------------------------------
# Fixed rules of growing accuracy: product Gauss-Legendre and Smolyak sparse grids.

# A rule of the sequence: its label, and a function (dtype=, device=) -> (nodes (N, d) on
# [-1, 1]^d, weights (N,)).
RuleFactory = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _legendre_orders(d: int) -> Iterator[tuple[str, RuleFactory]]:
    n = 4
    while True:
        yield f"Gauss-Legendre order {n}", functools.partial(product_rule, n, d, gauss_legendre)
        n = math.ceil(1.5 * n)


def _smolyak_levels(d: int) -> Iterator[tuple[str, RuleFactory]]:
    level = 1
    while True:
        yield f"Smolyak level {level}", functools.partial(smolyak, level, d, gauss_legendre)
        level += 1


def _mapped(
    rules: Iterator[tuple[str, RuleFactory]], box: _BoxMap, dtype: torch.dtype, device: torch.device
) -> Iterator[Rule]:
    """Rules on [-1, 1]^d mapped onto the box's reference coordinates."""
    half_width = 0.5 * (box.z_upper - box.z_lower)
    center = 0.5 * (box.z_upper + box.z_lower)
    volume = float(half_width.prod())
    for label, make in rules:

        def mapped(make: RuleFactory = make) -> tuple[torch.Tensor, torch.Tensor]:
            nodes, weights = make(dtype=dtype, device=device)
            return center + half_width * nodes, weights * volume

        yield label, mapped


# --------------------------------------------------------------------------------------
# Randomized quasi-Monte Carlo


def _qmc(
    evaluator: _Evaluator,
    box: _BoxMap,
    rtol: float,
    atol: float,
    max_evals: int,
    seed: Seed,
    log_space: bool,
) -> tuple[torch.Tensor, torch.Tensor, int, bool, str, torch.Tensor | None]:
    """Mean over 16 independently scrambled Sobol sequences; stderr across scrambles.

    Each round doubles the points per scramble (a power of two keeps Sobol balanced), and
    every round evaluates all scrambles' points in one call. Scramble r is seeded with
    ``seed + r`` (an int seed as given, one drawn from a Generator, fresh entropy for None).
    """
    d = box.lower.numel()
    dtype, device = box.lower.dtype, box.lower.device
    base_seed = integer_seed(seed)
    engines = [
        torch.quasirandom.SobolEngine(d, scramble=True, seed=(base_seed + r) % 2**64)
        for r in range(_QMC_SCRAMBLES)
    ]
    width = box.z_upper - box.z_lower
    per_scramble = 2**8
    n_evals = 0
    sums: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    mean = stderr = torch.empty(0)
    drawn = 0
    while True:
        new = per_scramble - drawn
        if n_evals + new * _QMC_SCRAMBLES > max_evals:
            if sums is None:
                raise ValueError(
                    f"max_evals = {max_evals} is below the first round's "
                    f"{new * _QMC_SCRAMBLES} points"
                )
            message = f"not converged: max_evals = {max_evals} reached at {drawn} points a scramble"
            return mean, stderr, n_evals, False, message, shift
        u = torch.stack([e.draw(new, dtype=dtype) for e in engines]).to(device)  # (R, new, d)
        z = box.z_lower + width * u.reshape(-1, d)
        values = evaluator(z)  # (R new, B)
        n_evals += len(z)
        values = values.reshape(_QMC_SCRAMBLES, new, -1) * float(width.prod())
        if log_space:
            new_shift = values.detach().amax(dim=(0, 1))
            new_shift = finite_or_zero(new_shift)
            if shift is not None:
                new_shift = torch.maximum(shift, new_shift)
                sums = sums * torch.exp(shift - new_shift)
            shift = new_shift
            values = torch.exp(values - shift)
        batch_sums = values.sum(dim=1)  # (R, B)
        sums = batch_sums if sums is None else sums + batch_sums
        drawn = per_scramble
        estimates = sums / drawn  # (R, B)
        mean = estimates.mean(dim=0)
        stderr = estimates.detach().std(dim=0) / math.sqrt(_QMC_SCRAMBLES)
        tolerance = torch.clamp(rtol * mean.detach().abs(), min=atol)
        if bool((stderr <= tolerance).all()):
            message = (
                f"converged: standard error over {_QMC_SCRAMBLES} scrambles within the "
                f"tolerance at {drawn} points a scramble"
            )
            return mean, stderr, n_evals, True, message, shift
        per_scramble *= 2


def cubature(
    f: Integrand,
    lower: Sequence[float] | torch.Tensor,
    upper: Sequence[float] | torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int = 50_000_000,
    rule: str | CubatureRule = "adaptive",
    batched: bool = True,
    seed: Seed = None,
    device: torch.device | str | None = None,
    points: Sequence[Breakpoints] | None = None,
) -> IntegrationResult:
    """``∫_box f(x) dx`` over ``[lower_1, upper_1] x ... x [lower_d, upper_d]``, differentiably.

    Stops when ``error <= max(atol, rtol * |value|)`` for every integrand; every round is ONE
    call of ``f``.

    Args:
        f: maps points of shape ``(n, d)`` to ``(n,)`` or ``(n, *batch)`` (with
            ``batched=False``: a function of one point of shape ``(d,)``, vmapped).
        lower: the lower limits, shape ``(d,)``; ±inf allowed; ``lower_k > upper_k`` flips
            the sign, as in 1-D. The computation runs in the limits' dtype: float64
            (numbers, integer tensors) or float32.
        upper: the upper limits, shape ``(d,)``; ±inf allowed.
        rtol: the relative tolerance. The default follows the dtype: 1e-8 in float64, 1000
            eps = 1.2e-4 in float32 (20 times the round-off floor 50 eps below which no
            error estimate goes); an rtol below 50 eps with atol = 0 is an error. For "qmc"
            the error is a standard error (a statistical estimate over 16 scrambles), not a
            bound.
        atol: the absolute tolerance.
        max_evals: the most points; beyond it ``converged=False`` and a ConvergenceWarning.
        rule: "adaptive" (d <= 6), "gauss-legendre", "sparse" or "qmc" (see the module doc).
        batched: whether ``f`` takes a batch of points (default) or one point.
        seed: the scrambling seed of "qmc": an int (the same points on every call), a
            torch.Generator (drawn from) or None (fresh entropy); the other rules ignore it.
        device: where new tensors go (default: the limits' device, else the CPU).
        points: per axis, the breakpoints where ``f`` jumps, has a kink or a singularity
            across the hyperplane x_k = p (a sequence of d sequences, None or [] for an
            axis without): the box is cut into the grid of sub-boxes between them, so such
            a jump costs nothing. Finite numbers inside the limits; "adaptive" only.

    Returns:
        IntegrationResult(value, error, n_evals, converged, message), ``value`` of the batch
        shape with its autograd graph.

    With "adaptive" the error is an estimate, not a bound: no rule that samples finitely
    many points sees a jump or kink closer to a face of a box than its outermost node (0.2 %
    of the width in 1-D, 0.4 % for d = 2..5, 1.2 % for d = 6), and the box to start from is
    the whole domain (give ``points`` for features you know of). Where the values are rough
    (a jump or kink between nodes), the estimate is at least a bound that holds for a jump
    or kink anywhere between the nodes, and a split whose children both miss the roughness
    their parent saw is done again elsewhere.

    Raises:
        ValueError: when lower and upper differ in shape or are not 1-D, for NaN limits,
            bad tolerances (negative, NaN, below the dtype's round-off), a max_evals below
            the first round's points, an unknown rule (the valid ones are listed) or
            device, d > 6 with "adaptive", or an output of ``f`` whose leading dimension is
            not n; for ``points`` that are not d sequences of finite numbers inside the
            limits, or with a rule other than "adaptive"; a negative seed or one of 2^64 or
            more.
        TypeError: ``f`` not callable, ``batched`` not a bool, a ``seed`` that is not an
            int, a torch.Generator or None, limits that are not real numbers or tensors,
            complex, float16 or bfloat16 limits, a complex output of f.
        NonFiniteError: when ``f`` is NaN or infinite at a point (the message names it).

    Example:
        >>> import torch, probcalc as pc
        >>> r = pc.integrate.cubature(lambda x: torch.exp(-(x**2).sum(1)), [-5, -5], [5, 5])
        >>> abs(float(r.value) - torch.pi) < 1e-8
        True
    """
    return _run(
        f,
        lower,
        upper,
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        rule=rule,
        batched=batched,
        seed=seed,
        device=device,
        log_space=False,
        name="cubature",
        points=points,
    )


def log_cubature(
    log_f: Integrand,
    lower: Sequence[float] | torch.Tensor,
    upper: Sequence[float] | torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int = 50_000_000,
    rule: str | CubatureRule = "adaptive",
    batched: bool = True,
    seed: Seed = None,
    device: torch.device | str | None = None,
    points: Sequence[Breakpoints] | None = None,
) -> IntegrationResult:
    """``log ∫_box exp(log_f(x)) dx``, without overflow or underflow: the box form of
    :func:`probcalc.integrate.log_integral` (arguments and errors as for :func:`cubature`;
    the tolerance applies to the integral relatively, to its log absolutely)."""
    return _run(
        log_f,
        lower,
        upper,
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        rule=rule,
        batched=batched,
        seed=seed,
        device=device,
        log_space=True,
        name="log_integral",
        points=points,
    )
