"""quad and the 1-D log_integral: globally adaptive Gauss-Kronrod, one call of f per round."""

from __future__ import annotations

import torch

from ..core.results import IntegrationResult
from ._checks import Integrand, as_batched, check_tolerances, evaluate_checked, finish
from ._checks import resolve_dtype_device as _resolve
from .adaptive import ProductKronrodRule, integrate_adaptive

__all__ = ["quad"]


class _LineMap:
    """Maps the reference coordinate t in [0, 1/2] of two pieces onto the integration line.

    Piece 0 measures from the lower end, piece 1 from the upper end, so that nodes near
    either end keep full relative precision. The distance from the end, in the unit
    coordinate z, is s = 3t² - 2t³ (the cubic "smoothstep", symmetric about t = 1/2):
    its Jacobian 6t(1 - t) vanishes at both ends, which turns endpoint singularities such
    as x^(-1/2) or log x into bounded integrands, so they converge to 1e-10 without the
    extrapolation QUADPACK needs. Then finite [a, b]: x = a + (b - a) z; [a, ∞):
    x = a + z / (1 - z). (-∞, b] and (-∞, ∞) fold onto [-b, ∞) and [0, ∞) by reflecting the
    integrand.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        lower_infinite, upper_infinite = bool(torch.isinf(a)), bool(torch.isinf(b))
        if lower_infinite and upper_infinite:
            self.start, self.reflections = torch.zeros_like(a), (1.0, -1.0)
        elif lower_infinite:
            self.start, self.reflections = -b, (-1.0,)
        else:
            self.start, self.reflections = a, (1.0,)
        self.end = None if lower_infinite or upper_infinite else b

    def points(self, t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N,) on the folded half-line or the interval, and the Jacobian dx/dt (N,)."""
        from_upper = piece == 1
        s = t * t * (3 - 2 * t)  # distance from the anchored end in z
        ds_dt = 6 * t * (1 - t)
        if self.end is not None:
            width = self.end - self.start
            x = torch.where(from_upper, self.end - width * s, self.start + width * s)
            return x, width * ds_dt
        # [start, ∞): z = s from the lower end, 1 - z = s from the upper end
        x = self.start + torch.where(from_upper, (1 - s) / s, s / (1 - s))
        dz_factor = torch.where(from_upper, 1 / s**2, 1 / (1 - s) ** 2)
        return x, dz_factor * ds_dt


def _integrate_line(
    f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float,
    atol: float,
    max_evals: int,
    order: int,
    batched: bool,
    device: torch.device | str | None,
    log_space: bool,
    name: str,
) -> IntegrationResult:
    """The shared body of quad and the 1-D log_integral."""
    dtype, device = _resolve(a, b, device=device)
    check_tolerances(rtol, atol, max_evals, dtype)
    a = torch.as_tensor(a, dtype=dtype, device=device)
    b = torch.as_tensor(b, dtype=dtype, device=device)
    if a.dim() != 0 or b.dim() != 0:
        raise ValueError(f"a and b must be scalars, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    if bool(torch.isnan(a)) or bool(torch.isnan(b)):
        raise ValueError(f"the limits must not be NaN, got a = {float(a)}, b = {float(b)}")
    f = as_batched(f, batched)

    if bool(a == b):
        if log_space:
            raise ValueError("log_integral over an empty interval is log 0 = -inf: a == b")
        # (b - a) f(a): exactly 0, with the Leibniz derivatives -f(a) and f(b)
        values, batch_shape = evaluate_checked(f, a.reshape(1))
        value = (b - a) * values[0]
        return finish(value, torch.zeros_like(value), 1, True, "a == b: the integral is 0",
                      batch_shape, name)  # fmt: skip

    sign = 1.0
    if bool(a > b):
        if log_space:
            raise ValueError(f"log_integral needs a < b, got a = {float(a)}, b = {float(b)}")
        a, b, sign = b, a, -1.0
    line = _LineMap(a, b)
    batch_shape: list[torch.Size] = []

    def evaluate(t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, jacobian = line.points(t[:, 0], piece)
        points = torch.cat([reflection * x for reflection in line.reflections])
        values, shape = evaluate_checked(f, points, log_space=log_space)
        if not batch_shape:
            batch_shape.append(shape)
        parts = values.split(len(x))
        if log_space:
            combined = torch.logsumexp(torch.stack(parts), dim=0) if len(parts) > 1 else parts[0]
            return combined + torch.log(jacobian)[:, None], len(points)
        combined = sum(parts[1:], parts[0])
        # where f is 0, 0 (not 0 * inf: far out in a tail the Jacobian overflows)
        scaled = torch.where(
            combined == 0, torch.zeros_like(combined), combined * jacobian[:, None]
        )
        return scaled, len(points)

    if log_space:  # a tolerance on log I is a relative tolerance on I
        rtol, atol = max(rtol, atol), 0.0
    rule = ProductKronrodRule(order, 1, dtype, device)
    half = torch.tensor([[0.0, 0.5]], dtype=dtype, device=device)
    outcome = integrate_adaptive(
        evaluate,
        rule,
        lower=half[:, :1].repeat(2, 1),
        upper=half[:, 1:].repeat(2, 1),
        pieces=torch.tensor([0, 1], device=device),
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        log_space=log_space,
    )
    if log_space:
        total = outcome.value
        value = torch.log(total) + outcome.log_shift
        error = outcome.error / total.detach()
    else:
        value, error = sign * outcome.value, outcome.error
    return finish(value, error, outcome.n_evals, outcome.converged, outcome.message,
                  batch_shape[0], name)  # fmt: skip


def quad(
    f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float = 1e-10,
    atol: float = 0.0,
    max_evals: int = 100_000,
    order: int = 10,
    batched: bool = True,
    device: torch.device | str | None = None,
) -> IntegrationResult:
    """``∫_a^b f(x) dx`` by globally adaptive Gauss-Kronrod quadrature, differentiably.

    Every round evaluates the nodes of all intervals that need refinement in ONE call of
    ``f``. Stops when ``error <= max(atol, rtol * |value|)`` for every integrand.

    Args:
        f: maps nodes of shape ``(n,)`` to ``(n,)``, or to ``(n, *batch)`` for a batch of
            integrands sharing the intervals (with ``batched=False``: a function of one
            point, vmapped).
        a, b: the limits: Python floats or 0-d tensors (which may require grad), ±inf
            allowed (handled by the maps x = a + z/(1-z) and reflection). ``a > b`` gives
            the negated integral; ``a == b`` gives 0.
        rtol, atol: relative and absolute tolerances.
        max_evals: the most evaluations of ``f`` (points); beyond it the result comes back
            with ``converged=False`` and a ConvergenceWarning.
        order: the Gauss order n of the G_n-K_(2n+1) pair: 10 (G10-K21, default) or 7
            (G7-K15), or any other positive integer.
        batched: whether ``f`` takes a batch of nodes (default) or one point.
        device: where new tensors go (default: the limits' device, else the CPU).

    Returns:
        IntegrationResult(value, error, n_evals, converged, message); ``value`` has the
        batch shape and its autograd graph: differentiable with respect to what ``f``
        closes over and to finite limits (d/db = f(b), d/da = -f(a)).

    Raises:
        ValueError: for non-scalar or NaN limits, bad tolerances, or an output of ``f``
            whose leading dimension is not the number of nodes.
        NonFiniteError: when ``f`` is NaN or infinite at a node (the message names it).

    Example:
        >>> import torch, probcalc as pc
        >>> result = pc.integrate.quad(lambda x: torch.exp(-x**2), -float("inf"), float("inf"))
        >>> abs(float(result.value) - torch.pi ** 0.5) < 1e-12, result.converged
        (True, True)
    """
    return _integrate_line(
        f, a, b, rtol=rtol, atol=atol, max_evals=max_evals, order=order, batched=batched,
        device=device, log_space=False, name="quad",
    )  # fmt: skip


def log_quad(
    log_f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float = 1e-10,
    atol: float = 0.0,
    max_evals: int = 100_000,
    order: int = 10,
    batched: bool = True,
    device: torch.device | str | None = None,
) -> IntegrationResult:
    """``log ∫_a^b exp(log_f(x)) dx`` (a < b), computed without overflow or underflow.

    The body of :func:`probcalc.integrate.log_integral` in one dimension; arguments as
    for :func:`quad`, except that the tolerances apply to the integral relatively: the
    error reported is that of the log.
    """
    return _integrate_line(
        log_f, a, b, rtol=rtol, atol=atol, max_evals=max_evals, order=order, batched=batched,
        device=device, log_space=True, name="log_integral",
    )  # fmt: skip
