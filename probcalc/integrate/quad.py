"""quad and the 1-D log_integral: globally adaptive Gauss-Kronrod, one call of f per round."""

from __future__ import annotations

import torch

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
from .adaptive import ProductKronrodRule, integrate_adaptive

__all__ = ["quad"]


class _LineMap:
    """Maps the reference coordinate t in [0, 1/2] of two pieces per interval onto its line.

    The limits a, b are tensors of shape (P, *S): P intervals (the pieces of [a, b] between
    breakpoints) for each item of shape S (() for shared limits), each finite or not. Piece
    2i measures from the lower end of interval i, piece 2i + 1 from its upper end, so nodes
    near either end keep full relative precision. The distance from the end in the unit
    coordinate z is s = 3t² - 2t³ (the cubic "smoothstep", symmetric about t = 1/2): its
    Jacobian 6t(1 - t) vanishes at both ends, which turns endpoint singularities such as
    x^(-1/2) or log x into bounded integrands, so they converge to 1e-10 without the
    extrapolation QUADPACK needs. Then, by item: [a, b]: x = a + (b - a) z; [a, ∞):
    x = a + z/(1 - z); (-∞, b]: x = b - (1 - z)/z; (-∞, ∞): x = w/(1 - w²), w = 2z - 1.

    A node within a few ulps of a finite end that is not 0 (1 - 1e-9, say) is rounded by
    as much as its distance from the end changes: (1 - x)^(-1/2) there is off by 1e-7. So
    the Jacobian is taken at the node that was evaluated: the distance s is recomputed
    from the rounded x (exactly, near the end) and t moved to match, which keeps t on the
    smooth integrand the rule sees. (Without it (1 - x)^(-1/2) on [0, 1] lost 5.6e-14, at
    the round-off floor; with it, 1.6e-15.)
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.low_inf, self.up_inf = torch.isinf(a), torch.isinf(b)
        # infinite limits replaced by 0 where unused, so no branch makes inf - inf (whose
        # NaN would reach the gradient through torch.where)
        self.a = torch.where(self.low_inf, torch.zeros_like(a), a)
        self.b = torch.where(self.up_inf, torch.zeros_like(b), b)

    def resolution(self) -> torch.Tensor:
        """The smallest t (2P,) per piece whose point lies 4 ulps or more from a finite end
        it is anchored at (0 for ends at 0 or infinity): nearer, x rounds onto the end."""
        eps = torch.finfo(self.a.dtype).eps
        width = torch.where(self.low_inf | self.up_inf, 1.0, self.b - self.a).detach()
        # pieces 2i and 2i + 1 measure from a_i and b_i (from a finite end of a half-line)
        from_a = torch.where(self.low_inf, 0.0, 4 * eps * self.a.detach().abs())
        from_b = torch.where(self.up_inf, 0.0, 4 * eps * self.b.detach().abs())
        s = torch.stack([from_a, from_b], dim=1) / width.unsqueeze(1)  # (P, 2, *S)
        s = torch.where(width.unsqueeze(1) > 0, s, 0.0)  # an empty interval needs no nodes
        s = s.reshape(s.shape[0] * 2, -1).amax(dim=1)  # the pieces are shared by the items
        return torch.sqrt(s / 3)  # s = 3t² - 2t³ ≈ 3t² there

    def points(self, t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and the Jacobian dx/dt, each (N, *S), for t and piece of shape (N,)."""
        shape = (-1,) + (1,) * (self.a.dim() - 1)
        interval = piece // 2
        a, b = self.a[interval], self.b[interval]  # (N, *S)
        low_inf, up_inf = self.low_inf[interval], self.up_inf[interval]
        from_upper = (piece % 2 == 1).reshape(shape)
        t = t.reshape(shape)
        width = b - a
        x = self._x(t * t * (3 - 2 * t), from_upper, a, b, width, low_inf, up_inf)
        with torch.no_grad():  # the node as rounded: its distance from the anchored end
            t = t + self._realized(t, x, from_upper, a, b, width, low_inf, up_inf)
        s = t * t * (3 - 2 * t)
        ds_dt = 6 * t * (1 - t)
        finite_j = width.expand_as(s)
        upper_j = torch.where(from_upper, 1 / s**2, 1 / (1 - s) ** 2)  # [a, ∞)
        lower_j = torch.where(from_upper, 1 / (1 - s) ** 2, 1 / s**2)  # (-∞, b]
        product = 4 * s * (1 - s)
        w = torch.where(from_upper, 1 - 2 * s, 2 * s - 1)
        both_j = 2 * (1 + w * w) / product**2  # (-∞, ∞)
        jacobian = torch.where(
            low_inf & up_inf,
            both_j,
            torch.where(up_inf, upper_j, torch.where(low_inf, lower_j, finite_j)),
        )
        return x, jacobian * ds_dt

    @staticmethod
    def _x(
        s: torch.Tensor,
        from_upper: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        width: torch.Tensor,
        low_inf: torch.Tensor,
        up_inf: torch.Tensor,
    ) -> torch.Tensor:
        """The point at distance s (in z) from the anchored end."""
        near, far = s / (1 - s), (1 - s) / s  # z/(1-z) and (1-z)/z, on either piece
        finite_x = torch.where(from_upper, b - width * s, a + width * s)
        upper_x = a + torch.where(from_upper, far, near)  # [a, ∞): z = s or 1 - z = s
        lower_x = b - torch.where(from_upper, near, far)  # (-∞, b]: the mirror image
        # (-∞, ∞): w = 2z - 1, so 1 + w = 2s or 2 - 2s, and x = w / ((1 - w)(1 + w))
        w = torch.where(from_upper, 1 - 2 * s, 2 * s - 1)
        both_x = w / (4 * s * (1 - s))
        return torch.where(
            low_inf & up_inf,
            both_x,
            torch.where(up_inf, upper_x, torch.where(low_inf, lower_x, finite_x)),
        )

    @staticmethod
    def _realized(
        t: torch.Tensor,
        x: torch.Tensor,
        from_upper: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        width: torch.Tensor,
        low_inf: torch.Tensor,
        up_inf: torch.Tensor,
    ) -> torch.Tensor:
        """The shift of t that puts it on the rounded x: one Newton step on s(t) = s̃, where
        s̃ is x's distance from the finite end its piece is anchored at (exact near it)."""
        s = t * t * (3 - 2 * t)
        from_b = b - x  # ≥ 0, exact near b (Sterbenz)
        from_a = x - a
        distance = torch.where(from_upper, from_b, from_a)
        finite = torch.where(width > 0, distance / torch.where(width > 0, width, 1.0), s)
        # [a, ∞): piece 0 has x - a = s/(1 - s), piece 1 has x - a = (1 - s)/s
        upper = torch.where(from_upper, 1 / (1 + from_a), from_a / (1 + from_a))
        lower = torch.where(from_upper, from_b / (1 + from_b), 1 / (1 + from_b))
        realized = torch.where(
            low_inf & up_inf, s, torch.where(up_inf, upper, torch.where(low_inf, lower, finite))
        )
        return (realized - s) / (6 * t * (1 - t))


def _integrate_line(
    f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float | None,
    atol: float,
    max_evals: int,
    order: int,
    batched: bool,
    device: torch.device | str | None,
    log_space: bool,
    name: str,
    points: Breakpoints = None,
    limit_names: tuple[str, str] = ("a", "b"),
) -> IntegrationResult:
    """The shared body of quad and the 1-D log_integral; messages name the limits by
    ``limit_names`` (log_integral's are lower and upper)."""
    check_integrand(f, batched)
    low, high = limit_names
    dtype, device = _resolve(a, b, device=device)
    rtol = default_rtol(rtol, dtype, 1e-10 if name == "quad" else 1e-8)
    check_tolerances(rtol, atol, max_evals, dtype)
    a = as_limit(a, low, dtype, device)
    b = as_limit(b, high, dtype, device)
    try:
        a, b = torch.broadcast_tensors(a, b)
    except RuntimeError:
        raise ValueError(
            f"{low} and {high} must broadcast to one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        ) from None
    if a.numel() == 0:
        raise ValueError(f"{low} and {high} hold no limits: shape {tuple(a.shape)}")
    if bool(torch.isnan(a).any() | torch.isnan(b).any()):
        raise ValueError(
            f"the limits must not be NaN, got {low} = {a.tolist()}, {high} = {b.tolist()}"
        )
    if log_space and not bool((a < b).all()):
        raise ValueError(
            f"{name} needs {low} < {high}, got {low} = {a.tolist()}, {high} = {b.tolist()}"
        )
    elementwise = a.dim() > 0
    f = as_batched(f, batched)
    flip = a > b
    sign = torch.where(flip, -1.0, 1.0).to(dtype)
    a, b = torch.where(flip, b, a), torch.where(flip, a, b)
    if points is not None and elementwise:
        raise ValueError(f"points needs scalar limits {low} and {high}, got shape {tuple(a.shape)}")
    inner = [] if points is None else check_breakpoints(points, a, b, "points")
    # the intervals between breakpoints, (P, *S); each is two pieces, one from either end
    cuts = torch.tensor(inner, dtype=dtype, device=device)
    starts, ends = (
        (torch.cat([a[None], cuts]), torch.cat([cuts, b[None]])) if inner else (a[None], b[None])
    )
    line = _LineMap(starts, ends)
    count = len(inner) + 1
    batch_shape: list[torch.Size] = []

    def evaluate(t: torch.Tensor, piece: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, jacobian = line.points(t[:, 0], piece)
        values, shape = evaluate_checked(f, x, log_space=log_space, rtol=rtol, atol=atol)
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
        lower=half[:, :1].repeat(2 * count, 1),
        upper=half[:, 1:].repeat(2 * count, 1),
        pieces=torch.arange(2 * count, device=device),
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        log_space=log_space,
        # every piece starts at an end or a breakpoint (t = 0); t = 1/2 is a middle
        edges=half[:, :1],
        resolution=line.resolution(),
    )
    if log_space:
        total = outcome.value
        value = torch.log(total) + outcome.log_shift
        error = outcome.error / total.detach()
    else:
        value, error = outcome.value * sign.reshape(-1), outcome.error
    return finish(
        value, error, outcome.n_evals, outcome.converged, outcome.message, batch_shape[0], name
    )


def quad(
    f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int = 100_000,
    order: int = 10,
    batched: bool = True,
    device: torch.device | str | None = None,
    points: Breakpoints = None,
) -> IntegrationResult:
    """``∫_a^b f(x) dx`` by globally adaptive Gauss-Kronrod quadrature, differentiably.

    Every round evaluates the nodes of all intervals that need refinement in ONE call of
    ``f``. Stops when ``error <= max(atol, rtol * |value|)`` for every integrand.

    Args:
        f: maps nodes of shape ``(n,)`` to ``(n,)``, or to ``(n, *batch)`` for a batch of
            integrands sharing the limits (with ``batched=False``: a function of one point,
            vmapped). With limits of shape S, each integrand has its own: ``f`` maps nodes
            ``(n, *S)`` (column j on item j's line) to values ``(n, *S)``.
        a: the lower limit: a float or a tensor (which may require grad) that broadcasts
            with ``b`` to one shape S: () for one interval, or one interval per integrand.
            ±inf allowed, per item. ``a > b`` gives the negated integral; ``a == b`` gives
            0. The computation runs in the limits' dtype: float64 (numbers, integer
            tensors) or float32.
        b: the upper limit, as ``a``.
        rtol: the relative tolerance. The default follows the dtype: 1e-10 in float64,
            1000 eps = 1.2e-4 in float32 (20 times the round-off floor 50 eps below which
            no error estimate goes); an rtol below 50 eps with atol = 0 is an error. In
            float32 the nodes stop 4 ulps short of a finite end other than 0, which the
            end's map turns into a zone next to it that cannot be refined (the last 12 % of
            [0, 1]; more where |b| is large against b - a): a kink, jump or fast
            oscillation there needs a breakpoint in ``points`` or float64.
        atol: the absolute tolerance.
        max_evals: the most evaluations of ``f`` (points); beyond it the result comes back
            with ``converged=False`` and a ConvergenceWarning.
        order: the Gauss order n of the G_n-K_(2n+1) pair: 10 (G10-K21, default) or 7
            (G7-K15), or any other positive integer.
        batched: whether ``f`` takes a batch of nodes (default) or one point.
        device: where new tensors go (default: the limits' device, else the CPU).
        points: breakpoints inside [a, b] where ``f`` jumps, has a kink or a singularity
            (as ``scipy.integrate.quad``'s ``points``): the integral is the sum over the
            intervals between them, each treated like one with its own ends, so a jump
            there costs nothing. Finite numbers; needs scalar limits.

    Returns:
        IntegrationResult(value, error, n_evals, converged, message); ``value`` has the
        batch shape and its autograd graph: differentiable with respect to what ``f``
        closes over and to finite limits (d/db = f(b), d/da = -f(a)).

    Nodes come within ulps of the ends, where the Jacobian of the map vanishes; at an end
    other than 0 they stop 4 ulps short (nearer, x rounds onto the end), which leaves e.g.
    a quarter of ∫_0^1 (1 - x)^-0.9 out of reach: not converged (substitute t = 1 - x).

    The error is an estimate, not a bound: no finite set of nodes sees a jump closer to an
    end (or breakpoint) than the nearest node (here a few 1e-6 of the interval). Where the
    values are rough (a jump or kink between nodes) the estimate is at least a bound that
    holds for a jump or kink anywhere between the nodes, and a split whose children both
    miss the roughness their parent saw is done again elsewhere.

    Raises:
        ValueError: for NaN or empty limits or limits that do not broadcast, bad tolerances
            (negative, NaN, below the dtype's round-off), a max_evals below the first
            round's nodes, an order that is not a positive integer, an unknown device, or
            an output of ``f`` whose leading dimension is not the number of nodes (or, with
            limits of shape S, whose shape is not ``(n, *S)``); for points that are not
            finite, lie outside [a, b], or come with limits that are not scalars.
        TypeError: ``f`` not callable, ``batched`` not a bool, limits that are not real
            numbers or tensors, complex, float16 or bfloat16 limits, a complex output of f.
        NonFiniteError: when ``f`` is NaN or infinite at a node (the message names it).

    Example:
        >>> import torch, probcalc as pc
        >>> result = pc.integrate.quad(lambda x: torch.exp(-x**2), -float("inf"), float("inf"))
        >>> abs(float(result.value) - torch.pi ** 0.5) < 1e-12, result.converged
        (True, True)
    """
    return _integrate_line(
        f,
        a,
        b,
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        order=order,
        batched=batched,
        device=device,
        log_space=False,
        name="quad",
        points=points,
    )


def log_quad(
    log_f: Integrand,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int = 100_000,
    order: int = 10,
    batched: bool = True,
    device: torch.device | str | None = None,
    points: Breakpoints = None,
    limit_names: tuple[str, str] = ("a", "b"),
) -> IntegrationResult:
    """``log ∫_a^b exp(log_f(x)) dx`` (a < b), computed without overflow or underflow.

    The body of :func:`probcalc.integrate.log_integral` in one dimension; arguments as
    for :func:`quad`, except that the tolerances apply to the integral relatively (the
    error reported is that of the log) and the default rtol is 1e-8 in float64 (1000 eps =
    1.2e-4 in float32). Messages name the limits by ``limit_names``.
    """
    return _integrate_line(
        log_f,
        a,
        b,
        rtol=rtol,
        atol=atol,
        max_evals=max_evals,
        order=order,
        batched=batched,
        device=device,
        log_space=True,
        name="log_integral",
        points=points,
        limit_names=limit_names,
    )
