"""quad and the 1-D log_integral: globally adaptive Gauss-Kronrod, one call of f per round."""

from __future__ import annotations

import torch

from ..core.results import IntegrationResult
from ._checks import Integrand, as_batched, check_tolerances, evaluate_checked, finish
from ._checks import resolve_dtype_device as _resolve
from .adaptive import ProductKronrodRule, integrate_adaptive

__all__ = ["quad"]


class _LineMap:
    """Maps the reference coordinate t in [0, 1/2] of two pieces onto each item's line.

    The limits a, b are tensors of one shape S (() for shared limits), each item finite or
    not. Piece 0 measures from the lower end, piece 1 from the upper end, so nodes near
    either end keep full relative precision. The distance from the end in the unit
    coordinate z is s = 3t² - 2t³ (the cubic "smoothstep", symmetric about t = 1/2): its
    Jacobian 6t(1 - t) vanishes at both ends, which turns endpoint singularities such as
    x^(-1/2) or log x into bounded integrands, so they converge to 1e-10 without the
    extrapolation QUADPACK needs. Then, by item: [a, b]: x = a + (b - a) z; [a, ∞):
    x = a + z/(1 - z); (-∞, b]: x = b - (1 - z)/z; (-∞, ∞): x = w/(1 - w²), w = 2z - 1.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.low_inf, self.up_inf = torch.isinf(a), torch.isinf(b)
        # infinite limits replaced by 0 where unused, so no branch makes inf - inf (whose
        # NaN would reach the gradient through torch.where)
        self.a = torch.where(self.low_inf, torch.zeros_like(a), a)
        self.b = torch.where(self.up_inf, torch.zeros_like(b), b)

    def points(self, t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and the Jacobian dx/dt, each (N, *S), for t and piece of shape (N,)."""
        shape = (-1,) + (1,) * self.a.dim()
        from_upper = (piece == 1).reshape(shape)
        t = t.reshape(shape)
        s = t * t * (3 - 2 * t)  # distance from the anchored end, in z
        ds_dt = 6 * t * (1 - t)
        near, far = s / (1 - s), (1 - s) / s  # z/(1-z) and (1-z)/z, on either piece
        width = self.b - self.a
        finite_x = torch.where(from_upper, self.b - width * s, self.a + width * s)
        finite_j = width.expand_as(finite_x)
        # [a, ∞): z = s (piece 0) or 1 - z = s (piece 1)
        upper_x = self.a + torch.where(from_upper, far, near)
        upper_j = torch.where(from_upper, 1 / s**2, 1 / (1 - s) ** 2)
        # (-∞, b]: the mirror image
        lower_x = self.b - torch.where(from_upper, near, far)
        lower_j = torch.where(from_upper, 1 / (1 - s) ** 2, 1 / s**2)
        # (-∞, ∞): w = 2z - 1, so 1 + w = 2s or 2 - 2s, and x = w / ((1 - w)(1 + w))
        product = 4 * s * (1 - s)
        w = torch.where(from_upper, 1 - 2 * s, 2 * s - 1)
        both_x, both_j = w / product, 2 * (1 + w * w) / product**2
        x = torch.where(
            self.low_inf & self.up_inf,
            both_x,
            torch.where(self.up_inf, upper_x, torch.where(self.low_inf, lower_x, finite_x)),
        )
        jacobian = torch.where(
            self.low_inf & self.up_inf,
            both_j,
            torch.where(self.up_inf, upper_j, torch.where(self.low_inf, lower_j, finite_j)),
        )
        return x, jacobian * ds_dt


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
    try:
        a, b = torch.broadcast_tensors(a, b)
    except RuntimeError:
        raise ValueError(
            f"a and b must broadcast to one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None
    if bool(torch.isnan(a).any() | torch.isnan(b).any()):
        raise ValueError("the limits must not be NaN")
    if log_space and not bool((a < b).all()):
        raise ValueError("log_integral needs a < b")
    elementwise = a.dim() > 0
    f = as_batched(f, batched)
    flip = a > b
    sign = torch.where(flip, -1.0, 1.0).to(dtype)
    a, b = torch.where(flip, b, a), torch.where(flip, a, b)
    line = _LineMap(a, b)
    batch_shape: list[torch.Size] = []

    def evaluate(t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, jacobian = line.points(t[:, 0], piece)
        values, shape = evaluate_checked(f, x, log_space=log_space)
        if elementwise and shape != a.shape:
            raise ValueError(
                f"with limits of shape {tuple(a.shape)} the integrand must map x of shape "
                f"(n, {', '.join(map(str, a.shape))}) to the same shape, got (n, *{tuple(shape)})"
            )
        batch_shape[:] = [shape]
        jacobian = jacobian.reshape(len(x), -1)
        if log_space:
            return values + torch.log(jacobian), len(x)
        # where f is 0, 0 (not 0 * inf: far out in a tail the Jacobian overflows)
        return torch.where(values == 0, torch.zeros_like(values), values * jacobian), len(x)

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
        # both pieces start at an end of the line (t = 0); t = 1/2 is its middle
        edges=(half[0, :1], torch.full_like(half[0, :1], torch.inf)),
    )
    if log_space:
        total = outcome.value
        value = torch.log(total) + outcome.log_shift
        error = outcome.error / total.detach()
    else:
        value, error = outcome.value * sign.reshape(-1), outcome.error
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
            integrands sharing the limits (with ``batched=False``: a function of one point,
            vmapped). With limits of shape S, each integrand has its own: ``f`` maps nodes
            ``(n, *S)`` (column j on item j's line) to values ``(n, *S)``.
        a, b: the limits: floats or tensors (which may require grad) that broadcast to one
            shape S: () for one interval, or one interval per integrand. ±inf allowed, per
            item. ``a > b`` gives the negated integral; ``a == b`` gives 0.
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
        ValueError: for NaN limits or limits that do not broadcast, bad tolerances, or an
            output of ``f`` whose leading dimension is not the number of nodes (or, with
            limits of shape S, whose shape is not ``(n, *S)``).
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
