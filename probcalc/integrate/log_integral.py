"""log_integral: the log of an integral of exp(log_f), what evidence computations call."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.random import Seed, check_seed
from ..core.results import IntegrationResult
from ._checks import Breakpoints, Integrand
from .cubature import CubatureRule, log_cubature
from .quad import log_quad

__all__ = ["log_integral"]


def log_integral(
    log_f: Integrand,
    lower: float | Sequence[float] | torch.Tensor,
    upper: float | Sequence[float] | torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int | None = None,
    rule: str | CubatureRule = "adaptive",
    batched: bool = True,
    seed: Seed = None,
    device: torch.device | str | None = None,
    points: Breakpoints | Sequence[Breakpoints] = None,
) -> IntegrationResult:
    """``log ∫ exp(log_f(x)) dx`` over an interval (scalar limits) or a box (limits (d,)).

    The integrand is never exponentiated unshifted: the running maximum m of log_f is
    subtracted, so that an unnormalized posterior at exp(-1000) everywhere integrates as
    well as one at exp(0). The value is ``log(∫ exp(log_f - m)) + m``, differentiable with
    respect to parameters log_f closes over.

    Args:
        log_f: the log integrand: maps points ``(n,)`` (interval) or ``(n, d)`` (box) to
            ``(n,)`` or ``(n, *batch)``; ``-inf`` (zero density) is allowed, NaN and +inf
            are not.
        lower: the lower limit: a scalar (an interval, by adaptive Gauss-Kronrod) or of
            shape ``(d,)`` (a box, by :func:`cubature` with ``rule``); -inf allowed.
        upper: the upper limit, of the shape of ``lower``; +inf allowed; lower < upper.
        rtol: the tolerance on the integral relative to itself (equivalently, absolute on
            its log). The default follows the dtype of the limits: 1e-8 in float64, 1000
            eps = 1.2e-4 in float32.
        atol: a second tolerance of the same kind; the larger of the two applies.
        max_evals: the most points (default 100,000 on an interval, 5 x 10^7 on a box).
        rule: the rule on a box, as for :func:`cubature`.
        batched: whether ``log_f`` takes a batch of points (default) or one point.
        seed: the scrambling seed of rule "qmc": an int, a torch.Generator or None (fresh
            entropy).
        device: where new tensors go (default: the limits' device, else the CPU).
        points: breakpoints: on an interval as for :func:`probcalc.integrate.quad`, on a
            box one sequence per axis as for :func:`cubature`.

    Returns:
        IntegrationResult whose ``value`` is the log of the integral and ``error`` the
        estimated error of that log.

    Raises:
        ValueError: for lower >= upper, limits of different shapes, bad tolerances, bad
            points, a seed out of torch's range, and the other arguments :func:`quad` and
            :func:`cubature` reject.
        TypeError: as for :func:`quad` and :func:`cubature` (log_f not callable, limits
            that are not real numbers or tensors, ...).
        NonFiniteError: when log_f is NaN or +inf at a point.

    Example:
        >>> import torch, math, probcalc as pc
        >>> r = pc.integrate.log_integral(lambda x: -1000 - x**2 / 2, -math.inf, math.inf)
        >>> abs(float(r.value) - (-1000 + 0.5 * math.log(2 * math.pi))) < 1e-10
        True
    """
    check_seed(seed)
    scalar_limits = all(
        not isinstance(limit, Sequence) and getattr(limit, "ndim", 0) == 0
        for limit in (lower, upper)
    )
    if scalar_limits:
        return log_quad(
            log_f,
            lower,
            upper,
            rtol=rtol,
            atol=atol,
            max_evals=100_000 if max_evals is None else max_evals,
            batched=batched,
            device=device,
            points=points,
            limit_names=("lower", "upper"),
        )
    return log_cubature(
        log_f,
        lower,
        upper,
        rtol=rtol,
        atol=atol,
        max_evals=50_000_000 if max_evals is None else max_evals,
        rule=rule,
        batched=batched,
        seed=seed,
        device=device,
        points=points,
    )
