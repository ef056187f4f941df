"""Minimization and the conjugate-gradient solver that Laplace, newton-cg and TRPO share.

``minimize(fun, x0, method=...)`` returns an :class:`OptimizeResult`. Second-order methods
are written here because torch has none: damped Newton with a Cholesky solve and a
modified Hessian where it is not positive definite, and line-search Newton-CG (truncated
Newton, Nocedal & Wright, Algorithm 7.1) on Hessian-vector products. First-order methods
are torch.optim's: L-BFGS with a strong-Wolfe line search, Adam and SGD.

Every method succeeds when ``max_i |∂f/∂x_i| <= tol`` (scipy's ``gtol`` and torch's
``tolerance_grad`` use the same infinity norm). Near a minimum the decrease of f that a step
makes falls below the rounding error of f (about eps |f|, and |f| grows with the number of
data), so a test on values of f cannot tell good steps from bad there. The Newton methods
then judge steps by the gradient; with the default tolerance they also succeed at the
gradient's rounding floor when the Newton step there is within 100 eps of x (see
:func:`minimize`). L-BFGS's line search compares values of f and says so when it stops.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .derivatives import hessian, hvp_operator, value_and_grad
from .errors import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError
from .evaluation import check_callable, check_finite_start, describe_point
from .options import Option
from .results import ConjugateGradientResult, OptimizeResult

__all__ = ["Method", "conjugate_gradient", "minimize"]

Objective = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[[OptimizeResult], "bool | None"]

# Armijo sufficient-decrease constant and the most halvings a backtracking search tries.
_ARMIJO_C1 = 1e-4
_MAX_BACKTRACKS = 60
# A predicted decrease of f below _ROUNDING_MARGIN eps |f| cannot be told from rounding in f.
_ROUNDING_MARGIN = 100.0
# At the gradient's rounding floor, a Newton step within _STEP_ULPS eps max(1, max|x|) says
# that x is the minimizer to rounding (the default tolerance then counts as met).
_STEP_ULPS = 100.0


class Method(Option):
    """The methods of :func:`minimize`."""

    NEWTON = "newton"  # damped Newton: exact Hessian, Cholesky solve, backtracking
    NEWTON_CG = "newton-cg"  # truncated Newton: CG on Hessian-vector products, never forms H
    LBFGS = "lbfgs"  # torch.optim.LBFGS with a strong-Wolfe line search
    ADAM = "adam"  # torch.optim.Adam, for stochastic objectives
    SGD = "sgd"  # torch.optim.SGD, for stochastic objectives


_DEFAULT_MAX_ITER = {
    Method.NEWTON: 100,
    Method.NEWTON_CG: 200,
    Method.LBFGS: 1000,
    Method.ADAM: 1000,
    Method.SGD: 1000,
}
_STOCHASTIC = (Method.ADAM, Method.SGD)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    rtol: float = 1e-10,
    atol: float = 0.0,
    max_iter: int | None = None,
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None = None,
    stop_on_negative_curvature: bool = False,
    truncated: bool = False,
) -> ConjugateGradientResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` given only ``v -> A v``.

    Stops when ``||b - A x||_2 <= max(rtol * ||b||_2, atol)``.

    Args:
        matvec: the product with ``A``; maps a tensor of the shape of ``b`` to the same shape.
        b: the right-hand side, any shape (inner products run over all elements).
        x0: the starting guess, a real tensor of the shape of ``b`` (default zeros).
        rtol: the tolerance on the residual norm relative to ``||b||_2``.
        atol: the absolute tolerance on the residual norm.
        max_iter: the most products with ``A`` (default ``10 * b.numel()``).
        preconditioner: ``r -> M⁻¹ r`` for a symmetric positive definite ``M ≈ A``.
        stop_on_negative_curvature: on a direction with ``p'Ap <= 0`` return the iterate so
            far (flagged ``negative_curvature``, with the Rayleigh quotient ``p'Ap / p'p`` in
            ``curvature``) instead of raising, as truncated Newton and TRPO need. After at
            least one iteration that iterate minimizes ½x'Ax - b'x over the Krylov space
            searched so far, so ``b'x > 0`` (a descent direction); at iteration 0 it is x0.
        truncated: max_iter is a budget, not a failure (TRPO's 10 to 15 steps, truncated
            Newton): ending there unconverged does not warn; ``converged`` still says so.

    Returns:
        ConjugateGradientResult(x, residual_norm, nit, converged, negative_curvature,
        curvature). A run that ends without meeting the tolerance warns with
        ConvergenceWarning (not when ``truncated``, nor at negative curvature when stopping
        there was asked for).

    Raises:
        ValueError: when ``matvec`` or ``preconditioner`` changes the shape, tolerances are
            negative or NaN, ``b`` is not floating point, ``x0`` is not of the shape of ``b``
            or not finite, or max_iter is not a non-negative integer.
        TypeError: ``matvec`` or ``preconditioner`` not callable, ``b`` or ``x0`` not a
            tensor, a complex ``x0``.
        NotPositiveDefiniteError: on a direction with ``p'Ap <= 0``; ``min_eigenvalue`` is the
            Rayleigh quotient ``p'Ap / p'p``, an upper bound on A's smallest eigenvalue.
        NonFiniteError: when ``b``, a product with ``A``, ``p'Ap`` or a residual norm is not
            finite (an overflow included), with the figure.
    """
    result = _conjugate_gradient(
        matvec,
        b,
        x0=x0,
        rtol=rtol,
        atol=atol,
        max_iter=max_iter,
        preconditioner=preconditioner,
        stop_on_negative_curvature=stop_on_negative_curvature,
    )
    if not result.converged and not result.negative_curvature and not truncated:
        warnings.warn(
            ConvergenceWarning(
                f"conjugate_gradient stopped after {result.nit} iterations with residual norm "
                f"{result.residual_norm:.3e} > tolerance "
                f"{max(rtol * float(torch.linalg.vector_norm(b)), atol):.3e}"
            ),
            stacklevel=2,
        )
    return result


def _conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None,
    rtol: float,
    atol: float,
    max_iter: int | None,
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None,
    stop_on_negative_curvature: bool,
) -> ConjugateGradientResult:
    """Preconditioned CG (Hestenes & Stiefel), without the warning: callers decide."""
    check_callable(matvec, "matvec")
    if preconditioner is not None:
        check_callable(preconditioner, "preconditioner")
    for name, value in (("rtol", rtol), ("atol", atol)):
        _check_number(value, name)
        if not value >= 0:
            raise ValueError(f"{name} must be non-negative, got {name}={value}")
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"b must be a tensor, got {type(b).__name__}")
    if not b.is_floating_point():
        raise ValueError(f"b must be floating point, got {b.dtype}")
    if x0 is not None and not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor or None, got {type(x0).__name__}")
    if x0 is not None and x0.is_complex():
        raise TypeError(
            f"x0 must be real, got {x0.dtype}; conjugate_gradient solves real symmetric systems"
        )
    max_iter = 10 * b.numel() if max_iter is None else _count(max_iter, "max_iter", 0)
    b_norm = float(torch.linalg.vector_norm(b))
    if not math.isfinite(b_norm):
        raise NonFiniteError(
            f"||b||_2 = {b_norm}: b is not finite or its norm overflows {b.dtype}", value=b_norm
        )
    threshold = max(rtol * b_norm, atol)

    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        if x0.shape != b.shape:
            raise ValueError(f"x0 must have the shape of b {tuple(b.shape)}, got {tuple(x0.shape)}")
        if not bool(torch.isfinite(x0.detach()).all()):
            raise ValueError(f"x0 must be finite, got {describe_point(x0)}")
        x = x0.detach().clone().to(dtype=b.dtype)
        r = b - _checked_matvec(matvec, x, b)
    residual_norm = float(torch.linalg.vector_norm(r))
    if residual_norm <= threshold:
        return ConjugateGradientResult(x, residual_norm, 0, True)

    z = _preconditioned(preconditioner, r)
    p = z.clone()
    rz = _dot(r, z)
    for iteration in range(max_iter):
        Ap = _checked_matvec(matvec, p, b)
        curvature = float(_dot(p, Ap))
        if not math.isfinite(curvature):
            raise NonFiniteError(
                f"the CG direction's curvature p'Ap = {curvature} at iteration {iteration}",
                value=curvature,
            )
        if curvature <= 0.0:
            rayleigh = curvature / float(_dot(p, p))
            if stop_on_negative_curvature:
                return ConjugateGradientResult(x, residual_norm, iteration, False, True, rayleigh)
            raise NotPositiveDefiniteError(
                f"the matrix is not positive definite: a CG direction has p'Ap/p'p = "
                f"{rayleigh:.6g} at iteration {iteration}",
                min_eigenvalue=rayleigh,
            )
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        residual_norm = float(torch.linalg.vector_norm(r))
        if not math.isfinite(residual_norm):
            raise NonFiniteError(
                f"the CG residual norm is {residual_norm} at iteration {iteration + 1}",
                value=residual_norm,
            )
        if residual_norm <= threshold:
            return ConjugateGradientResult(x, residual_norm, iteration + 1, True)
        z = _preconditioned(preconditioner, r)
        rz_next = _dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    return ConjugateGradientResult(x, residual_norm, max_iter, False)


def _preconditioned(
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None, r: torch.Tensor
) -> torch.Tensor:
    """M⁻¹ r, checked to keep the shape of r (r itself without a preconditioner)."""
    if preconditioner is None:
        return r
    out = preconditioner(r)
    if not isinstance(out, torch.Tensor) or out.shape != r.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"preconditioner must return the shape of b {tuple(r.shape)}, got {shape}")
    return out


def _checked_matvec(
    matvec: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    out = matvec(v)
    if not isinstance(out, torch.Tensor) or out.shape != b.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"matvec must return the shape of b {tuple(b.shape)}, got {shape}")
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteError("matvec returned a non-finite product", value=out)
    return out


# --------------------------------------------------------------------------------------
# minimize


def minimize(
    fun: Objective,
    x0: torch.Tensor,
    *,
    method: str | Method = "newton",
    tol: float | None = None,
    max_iter: int | None = None,
    callback: Callback | None = None,
    options: Mapping[str, Any] | None = None,
) -> OptimizeResult:
    """Minimize a scalar function ``fun: R^d -> R`` from ``x0``.

    Stops with ``converged=True`` when ``max_i |∂f/∂x_i| <= tol``. With the default tolerance,
    "newton" and "newton-cg" also succeed when max|∂f/∂x| is at its rounding floor above
    sqrt(eps) — a full Newton step no longer reduces it, and f cannot resolve the decrease
    the step predicts — and that step is within ``100 eps max(1, max_i |x_i|)``: x is then
    the minimizer to rounding (the message says so). An explicit ``tol`` is kept strictly.

    Args:
        fun: the objective, a function of a tensor of shape ``(d,)`` returning a 0-d tensor.
            "newton" and "newton-cg" differentiate it with torch.func (it must be
            vmap/grad-traceable); "lbfgs", "adam" and "sgd" use plain autograd.
        x0: the starting point, shape ``(d,)``; integers and lists become float64.
        method: "newton", "newton-cg", "lbfgs", "adam" or "sgd" (see :class:`Method`).
        tol: the gradient tolerance; default ``sqrt(eps)`` of x0's dtype (1.5e-8 in float64)
            for newton and newton-cg (or their rounding floor, see above), ``eps^(1/3)``
            (6e-6) for lbfgs, and none for "adam"/"sgd", which then run ``max_iter`` steps.
        max_iter: the most iterations (default 100 newton, 200 newton-cg, 1000 otherwise).
        callback: called with an OptimizeResult after every iteration. Returning ``False``
            or raising ``StopIteration`` stops the run (``converged=False``, message "stopped
            by callback"); returning ``None`` continues. Returning ``True`` still stops, with
            a DeprecationWarning: it will continue in the next release. With "lbfgs" a
            callback costs one extra evaluation of ``fun`` per iteration.
        options: method settings. newton-cg: ``cg_max_iter`` (default ``min(d, 1000)``
            products per Newton step). lbfgs: torch.optim.LBFGS keywords (``history_size``,
            ``lr``, ...; not ``tolerance_grad``, which is ``tol``, nor ``tolerance_change``,
            which is 0). adam / sgd: torch.optim keywords (``lr`` — required for sgd —,
            ``momentum``, ``betas``, ``weight_decay``, ...).

    Returns:
        OptimizeResult(x, fun, grad, nit, n_evals, converged, message, method). When the
        tolerance is not met, ``converged`` is False and a ConvergenceWarning says by how much
        and why the method stopped (max_iter, a gradient at its rounding floor with the
        figures, a line search that f's rounding stops).

    Raises:
        ValueError: for an unknown method (the message lists the valid ones), an ``x0`` that
            is not of shape ``(d,)`` or not finite, ``fun`` not returning a scalar, a
            negative or NaN tol, a max_iter or cg_max_iter that is not a non-negative
            (positive) integer, or unknown options (the message lists the valid options of
            that method: for "lbfgs", "adam" and "sgd" the keywords of the torch.optim
            constructor minimize does not set itself).
        TypeError: ``fun`` or ``callback`` not callable, a complex ``x0`` (or a float16 or
            bfloat16 one for "newton", whose Cholesky torch.linalg does not do), options
            that are not a dict, a tol or max_iter that is not a number, a callback that
            returns something other than None, True or False.
        NonFiniteError: when ``fun`` or its gradient is not finite at ``x0`` (and, for
            lbfgs/adam/sgd, at any later iterate: newton methods backtrack instead).

    Example:
        >>> import torch, probcalc as pc
        >>> rosen = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        >>> result = pc.minimize(rosen, torch.tensor([-1.2, 1.0], dtype=torch.float64))
        >>> result.converged, result.nit, torch.allclose(result.x, torch.ones(2).double())
        (True, 21, True)
    """
    check_callable(fun, "fun")
    method = Method.parse(method, name="method")
    x0 = _as_start_point(x0, method)
    default_tol = tol is None
    if tol is None:
        tol = _default_tolerance(method, x0.dtype)
    else:
        _check_number(tol, "tol")
        if not tol >= 0:
            raise ValueError(f"tol must be non-negative, got {tol}")
    max_iter = _DEFAULT_MAX_ITER[method] if max_iter is None else _count(max_iter, "max_iter", 0)
    if callback is not None:
        check_callable(callback, "callback")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict of method settings, got {options!r}")
    options = dict(options or {})
    if any(not isinstance(key, str) for key in options):
        raise TypeError(f"options must have string keys, got {list(options)}")

    if method in (Method.NEWTON, Method.NEWTON_CG):
        _reject_options(options, {"cg_max_iter"} if method is Method.NEWTON_CG else set(), method)
        cg_max_iter = _count(options.get("cg_max_iter", min(x0.numel(), 1000)), "cg_max_iter", 1)
        result = _newton(fun, x0, tol, max_iter, callback, method, cg_max_iter, default_tol)
    elif method is Method.LBFGS:
        result = _lbfgs(fun, x0, tol, max_iter, callback, options)
    else:
        result = _first_order(fun, x0, tol, max_iter, callback, options, method)
    if not result.converged:
        warnings.warn(
            ConvergenceWarning(f"minimize({method.value}): {result.message}"), stacklevel=2
        )
    return result


def _default_tolerance(method: Method, dtype: torch.dtype) -> float | None:
    """sqrt(eps) for the Newton methods; eps^(1/3) for L-BFGS, whose line search compares
    values of f and so cannot see the last steps once they change f by less than its
    rounding error; none for the stochastic methods."""
    if method in _STOCHASTIC:
        return None
    eps = torch.finfo(dtype).eps
    return eps ** (1.0 / 3.0) if method is Method.LBFGS else math.sqrt(eps)


def _check_number(value: object, name: str) -> None:
    """TypeError unless ``value`` is a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")


def _count(value: object, name: str, minimum: int) -> int:
    """``value`` as an int >= minimum; TypeError for a non-number, ValueError otherwise."""
    _check_number(value, name)
    if not value >= minimum or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_start_point(x0: Any, method: Method) -> torch.Tensor:
    try:
        x = torch.as_tensor(x0)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"x0 must be a tensor or a sequence of numbers, got {x0!r}") from None
    if x.is_complex():
        raise TypeError(
            f"x0 must be real, got {x.dtype}; minimize a function of the real and imaginary "
            f"parts stacked into one real vector"
        )
    if not x.is_floating_point():
        x = x.to(torch.float64)
    if method is Method.NEWTON and x.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"method 'newton' factors the Hessian, which torch.linalg does not do in {x.dtype}; "
            f"give x0 in float32 or float64, or use method='newton-cg'"
        )
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(
            f"x0 must have shape (d,) with d >= 1, got {tuple(x.shape)}; flatten it "
            f"(x0.reshape(-1)) and reshape inside fun, or use probcalc.functional_module"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"x0 must be finite, got {x.tolist()}")
    return x.detach().clone()


def _reject_options(options: Mapping[str, Any], allowed: set[str], method: Method) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unknown options {unknown} for method {method.value!r}; valid: {valid}")


# Keywords of the torch.optim constructors that minimize sets itself: the parameters, and
# for L-BFGS the iteration budget (max_iter) and the stopping tests (see _lbfgs).
_SET_BY_MINIMIZE = {"self", "params", "max_iter", "tolerance_grad", "tolerance_change"}


def _optimizer_options(optimizer_class: type[torch.optim.Optimizer]) -> set[str]:
    """The keywords of a torch.optim constructor that ``options`` may set, read from its
    signature (so they follow the installed torch)."""
    parameters = inspect.signature(optimizer_class.__init__).parameters
    return {
        name
        for name, parameter in parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    } - _SET_BY_MINIMIZE


def _check_start(value: torch.Tensor, gradient: torch.Tensor | None, x0: torch.Tensor) -> None:
    check_finite_start(value, what="the objective", where="x0", point=x0, gradient=gradient)


def _scalar_objective(fun: Objective) -> Objective:
    """``fun`` with its output checked to be one real number, so that a vector objective
    is reported as ``fun``'s (also under torch.func's transforms: the check reads shapes)."""

    def checked(x: torch.Tensor) -> torch.Tensor:
        value = fun(x)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"fun must return a 0-d tensor (a scalar), got {shape}; reduce it (e.g. .sum())"
            )
        if value.is_complex():
            raise TypeError(f"fun must return a real 0-d tensor, got {value.dtype}")
        return value

    return checked


def _grad_norm(gradient: torch.Tensor) -> float:
    return float(gradient.detach().abs().max())


def _backtrack(
    fun: Objective,
    x: torch.Tensor,
    value: float,
    slope: float,
    direction: torch.Tensor,
    start: float = 1.0,
) -> tuple[float, int] | None:
    """Largest t in start, start/2, start/4, ... with f(x + t p) <= f(x) + c1 t g'p (Armijo).

    Non-finite trial values count as failures, so the search steps back into the domain.
    Returns (t, evaluations), or None when no step decreases f.
    """
    step = start
    with torch.no_grad():
        for evaluations in range(1, _MAX_BACKTRACKS + 1):
            trial_value = float(fun(x + step * direction))
            if math.isfinite(trial_value) and trial_value <= value + _ARMIJO_C1 * step * slope:
                return step, evaluations
            step *= 0.5
    return None


def _finish(
    x: torch.Tensor,
    value: torch.Tensor,
    gradient: torch.Tensor,
    nit: int,
    n_evals: int,
    tol: float | None,
    method: Method,
    reason: str | None,
    converged: str | None = None,
) -> OptimizeResult:
    """The OptimizeResult. ``reason`` says why the method stopped short; None means it
    met the gradient tolerance (or, with no tolerance, ran its whole budget), or the other
    stopping test that ``converged`` states."""
    norm = _grad_norm(gradient)
    if reason is not None:
        message = f"{reason}; max|grad| = {norm:.3e}"
        if tol is not None:
            message += f" (tol = {tol:.3e})"
    elif converged is not None:
        message = converged
    elif tol is None:
        message = f"ran the budget of {nit} iterations; max|grad| = {norm:.3e} (no tolerance set)"
    else:
        message = f"converged: max|grad| = {norm:.3e} <= tol = {tol:.3e} after {nit} iterations"
    return OptimizeResult(
        x=x.detach(),
        fun=value.detach(),
        grad=gradient.detach(),
        nit=nit,
        n_evals=n_evals,
        converged=reason is None,
        message=message,
        method=method.value,
    )


_CALLBACK_STOP = "stopped by callback"


def _call_back(
    callback: Callback | None,
    x: torch.Tensor,
    value: torch.Tensor,
    gradient: torch.Tensor,
    nit: int,
    n_evals: int,
    method: Method,
) -> bool:
    """Run the callback on the current iterate; True when it asks to stop (returns False or
    raises StopIteration; returning True stops too, deprecated)."""
    if callback is None:
        return False
    state = OptimizeResult(
        x.detach(),
        value.detach(),
        gradient.detach(),
        nit,
        n_evals,
        False,
        "in progress",
        method.value,
    )
    try:
        answer = callback(state)
    except StopIteration:
        return True
    if answer is None:
        return False
    if isinstance(answer, bool | np.bool_):
        if answer:
            warnings.warn(
                "a minimize callback that returns True stops the run today and will let it "
                "continue in the next release: return False or raise StopIteration to stop",
                DeprecationWarning,
                stacklevel=4,  # the caller of minimize
            )
        return True
    raise TypeError(
        f"callback must return None (continue), False (stop) or True, got "
        f"{type(answer).__name__} {answer!r:.60}"
    )


def _newton(
    fun: Objective,
    x: torch.Tensor,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    method: Method,
    cg_max_iter: int,
    rounding_stop_succeeds: bool,
) -> OptimizeResult:
    """Line-search Newton: a Newton direction p, then a step judged by f or by ∇f.

    "newton" solves H p = -g with the exact Hessian (:func:`_newton_direction`); "newton-cg"
    solves it by CG on Hessian-vector products (:func:`_newton_cg_direction`), never
    forming H. Steps:

    - Armijo backtracking on f while the decrease it predicts, ``-g'p``, is one that f can
      resolve: more than :func:`_rounding_slack` (a margin times eps |f|).
    - Below that, comparing values of f compares rounding errors (the Armijo test then
      stalls at random). The full step is taken when it cuts ``||g||`` by at least half of
      what the local model predicts (``||g|| - ||g + Hp||``), as Newton's method for
      ``∇f = 0`` does, or when f falls by more than the slack. When it does neither and f is
      unchanged within the slack, ∇f is at the floor that rounding leaves, and the method
      stops there.

    Converges when max|g| <= tol; and, where ``rounding_stop_succeeds`` (the
    default tolerance), at that floor when the Newton step there is within
    ``_STEP_ULPS eps max(1, max|x|)``: x is then the minimizer to rounding.
    """
    eps = torch.finfo(x.dtype).eps
    fun = _scalar_objective(fun)
    value_grad = value_and_grad(fun)
    hess = hessian(fun)

    def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        if method is Method.NEWTON:
            value, gradient = value_grad(point)
            return value.detach(), gradient.detach(), None
        operator = hvp_operator(fun, point)  # f, ∇f and the HVP graph in one pass
        return operator.value.detach(), operator.grad.detach(), operator

    value, gradient, operator = evaluate(x)
    _check_start(value, gradient, x)
    n_evals = 1
    nit = 0
    modified_steps = 0
    reason: str | None = None
    converged: str | None = None
    while True:
        if nit > 0 and _call_back(callback, x, value, gradient, nit, n_evals, method):
            reason = _CALLBACK_STOP
            break
        if _grad_norm(gradient) <= tol:
            if method is Method.NEWTON:
                reason = _saddle_point(hess(x))
            break
        if nit >= max_iter:
            reason = f"reached max_iter = {max_iter} iterations"
            break
        if method is Method.NEWTON:
            H = hess(x).detach()
            direction, modified = _newton_direction(H, gradient)
            modified_steps += modified
            product: Callable[[torch.Tensor], torch.Tensor] = H.__matmul__
        else:
            direction = _newton_cg_direction(operator, gradient, cg_max_iter)
            product = operator
        direction = direction.detach()

        slope = float(_dot(gradient, direction))
        slack = _rounding_slack(value)
        start = 1.0
        if -slope <= slack:
            # f cannot resolve the decrease that the step predicts: judge it by ∇f
            trial_value, trial_gradient, trial_operator = evaluate(x + direction)
            n_evals += 1
            norm = float(torch.linalg.vector_norm(gradient))
            predicted = float(torch.linalg.vector_norm(gradient + product(direction).detach()))
            trial_norm = float(torch.linalg.vector_norm(trial_gradient))
            finite = math.isfinite(float(trial_value)) and math.isfinite(trial_norm)
            if finite and (
                (trial_norm < norm and trial_norm <= 0.5 * (norm + predicted))
                or float(trial_value) < float(value) - slack
            ):
                x = (x + direction).detach()
                value, gradient, operator = trial_value, trial_gradient, trial_operator
                nit += 1
                continue
            if finite and float(trial_value) <= float(value) + slack:
                step_size = _grad_norm(direction)
                step_floor = _STEP_ULPS * eps * max(1.0, _grad_norm(x))
                floor = (
                    f"the gradient is at the floor that rounding leaves: the {method.value} "
                    f"step, max|p| = {step_size:.1e}, predicts a decrease of f by "
                    f"{-0.5 * slope:.1e}, below the {slack:.1e} that f = {float(value):.9g} "
                    f"resolves, and leaves max|grad| at {_grad_norm(trial_gradient):.3e}"
                )
                if rounding_stop_succeeds and step_size <= step_floor:
                    converged = (
                        f"converged to rounding after {nit} iterations: {floor}; the step is "
                        f"within {_STEP_ULPS:g} eps max(1, max|x|) = {step_floor:.1e}, so x is "
                        f"the minimizer to rounding although max|grad| = "
                        f"{_grad_norm(gradient):.3e} > sqrt(eps) = {math.sqrt(eps):.3e}"
                    )
                    reason = _saddle_point(H) if method is Method.NEWTON else None
                else:
                    reason = floor
                break
            start = 0.5  # f rose by more than rounding: the model is off, backtrack on f
        found = _backtrack(fun, x, float(value), slope, direction, start)
        if found is None:
            reason = f"the line search found no decrease along the {method.value} direction"
            break
        step, evaluations = found
        n_evals += evaluations
        x = (x + step * direction).detach()
        value, gradient, operator = evaluate(x)
        n_evals += 1
        nit += 1
    result = _finish(x, value, gradient, nit, n_evals, tol, method, reason, converged)
    if modified_steps:
        note = f" ({modified_steps} steps used a modified Hessian: not positive definite there)"
        result = replace(result, message=result.message + note)
    return result


def _rounding_slack(value: torch.Tensor) -> float:
    """The smallest change of f that rounding lets one trust: a margin times eps |f| (f is
    usually a sum whose terms may partly cancel, so its rounding error can exceed eps |f|)."""
    return _ROUNDING_MARGIN * torch.finfo(value.dtype).eps * abs(float(value))


def _saddle_point(H: torch.Tensor) -> str | None:
    """None where H is positive definite; otherwise why a vanishing gradient is no minimum."""
    if int(torch.linalg.cholesky_ex(H).info) == 0:
        return None
    smallest = float(torch.linalg.eigvalsh(H)[0])
    return (
        f"the gradient vanishes but the Hessian is not positive definite "
        f"(smallest eigenvalue {smallest:.6g}): a saddle point, not a minimum"
    )


def _newton_direction(H: torch.Tensor, gradient: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Solve H p = -g; where H is not PD, use |H| with eigenvalues floored (a descent step)."""
    factor, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        return -torch.cholesky_solve(gradient.unsqueeze(-1), factor).squeeze(-1), False
    eigenvalues, eigenvectors = torch.linalg.eigh(H)
    floor = math.sqrt(torch.finfo(H.dtype).eps) * max(1.0, float(eigenvalues.abs().max()))
    modified = eigenvalues.abs().clamp(min=floor)
    return -eigenvectors @ ((eigenvectors.T @ gradient) / modified), True


def _newton_cg_direction(
    operator: Callable[[torch.Tensor], torch.Tensor], gradient: torch.Tensor, cg_max_iter: int
) -> torch.Tensor:
    """Truncated Newton (Nocedal & Wright, Algorithm 7.1): CG on H p = -g to the forcing
    tolerance ||r|| <= min(0.5, sqrt(||g||)) ||g|| (superlinear convergence), stopped early
    at negative curvature; steepest descent when the first CG direction already has it."""
    forcing = min(0.5, math.sqrt(float(torch.linalg.vector_norm(gradient))))
    solve = _conjugate_gradient(
        operator,
        -gradient,
        x0=None,
        rtol=forcing,
        atol=0.0,
        max_iter=cg_max_iter,
        preconditioner=None,
        stop_on_negative_curvature=True,
    )
    if solve.nit == 0 or not bool(_dot(gradient, solve.x) < 0):
        return -gradient
    return solve.x


class _AutogradObjective:
    """``fun`` on a leaf tensor with plain autograd: counts evaluations, checks values, and
    remembers the last point so that evaluating it twice in a row costs nothing.

    With ``value_scale`` c and ``step_scale`` s (powers of two, so the scaling is exact) the
    optimizer sees ``F(z) = c f(x0 + s z)`` on the leaf ``z`` (from 0); the values, gradients
    and points that :meth:`evaluate`, :meth:`point` and the error messages report are f's,
    ∇f's and x's.
    """

    def __init__(
        self, fun: Objective, x0: torch.Tensor, value_scale: float = 1.0, step_scale: float = 1.0
    ) -> None:
        self.fun = _scalar_objective(fun)
        self.value_scale = value_scale
        self.step_scale = step_scale
        self.scaled = value_scale != 1.0 or step_scale != 1.0
        self.origin = x0.detach().clone()
        start = torch.zeros_like(self.origin) if self.scaled else self.origin
        self.leaf = start.clone().requires_grad_(True)
        self.evaluations = 0
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def point(self) -> torch.Tensor:
        """The current x."""
        if not self.scaled:
            return self.leaf.detach()
        return self.origin + self.step_scale * self.leaf.detach()

    def closure(self) -> torch.Tensor:
        """F(z) with z.grad set: the closure torch.optim optimizers call."""
        leaf = self.leaf.detach()
        if self._last is not None and torch.equal(self._last[0], leaf):
            self.leaf.grad = self._last[2].clone()
            return self._last[1]
        self.leaf.grad = None
        point = self.point()
        value = self.fun(self.origin + self.step_scale * self.leaf if self.scaled else self.leaf)
        self.evaluations += 1
        if self.evaluations == 1:
            _check_start(value, None, point)
        if not bool(torch.isfinite(value.detach())):
            where = f"evaluation {self.evaluations}"
            raise NonFiniteError(
                f"the objective is {float(value.detach())} at {where}, x = {describe_point(point)}",
                value=float(value.detach()),
                where=where,
            )
        scaled_value = value * self.value_scale if self.scaled else value
        scaled_value.backward()
        if self.evaluations == 1:
            _check_start(value.detach(), self._unscale(self.leaf.grad), point)
        self._last = (leaf.clone(), scaled_value.detach(), self.leaf.grad.detach().clone())
        return scaled_value.detach()

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), ∇f(x)) at the current x."""
        value = self.closure()
        if self.scaled:
            value = value / self.value_scale
        return value, self._unscale(self.leaf.grad.detach().clone())

    def _unscale(self, gradient: torch.Tensor) -> torch.Tensor:
        """∇f from ∇F = c s ∇f."""
        return gradient / (self.value_scale * self.step_scale) if self.scaled else gradient


def _lbfgs_scales(dtype: torch.dtype) -> tuple[float, float]:
    """Powers of two c and s for which torch's L-BFGS on ``c f(x0 + s z)`` ignores its
    absolute constants: a curvature pair is used only when ``y's > 1e-10``, and the
    strong-Wolfe zoom gives up when the bracket times ``max|d|`` is below ``1e-9``. Near the
    minimum both hold for the steps that matter (``y's`` of order ``|s|^2``), so the history
    freezes, the line search quits, and L-BFGS stalls at a gradient set by f's units rather
    than by rounding (max|grad| 2.4e-7 on the 100-d Rosenbrock function, 6.5e-7 on a logistic
    regression). ``y's`` scales by c and the zoom's test by 1/s; c = 1e-10 / eps², s =
    eps / 1e-9 (rounded to powers of two, capped at 1) put both below rounding."""
    eps = torch.finfo(dtype).eps
    value_scale = 2.0 ** math.ceil(math.log2(1e-10 / eps**2))
    step_scale = min(1.0, 2.0 ** math.floor(math.log2(eps / 1e-9)))
    return max(1.0, value_scale), step_scale


_LBFGS_FIXED = ("tolerance_grad", "tolerance_change")


def _lbfgs(
    fun: Objective,
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    options: dict[str, Any],
) -> OptimizeResult:
    """torch.optim.LBFGS with a strong-Wolfe line search, stopping on max|grad| <= tol.

    It runs on ``c f(x0 + s z)`` with the powers of two of :func:`_lbfgs_scales`, which
    change no rounding and, in exact arithmetic, only the length of the first trial step.
    """
    fixed = sorted(set(options) & {*_LBFGS_FIXED, "max_iter"})
    if fixed:
        raise ValueError(
            f"options {fixed} are set by minimize for method 'lbfgs': tolerance_grad is tol, "
            f"tolerance_change is 0 (the gradient decides), and max_iter is minimize's "
            f"max_iter argument"
        )
    _reject_options(options, _optimizer_options(torch.optim.LBFGS), Method.LBFGS)
    value_scale, step_scale = _lbfgs_scales(x0.dtype)
    objective = _AutogradObjective(fun, x0, value_scale, step_scale)
    settings = {
        "lr": 1.0,
        "history_size": 20,
        "line_search_fn": "strong_wolfe",
        # max|∇F| = c s max|∇f|, exactly (powers of two)
        "tolerance_grad": tol * value_scale * step_scale,
        # torch's default stops when |f_k - f_(k-1)| < 1e-9 in absolute terms, long before
        # the gradient tolerance when f is near 0; the gradient decides here
        "tolerance_change": 0.0,
        "max_eval": 2 * max_iter + 10,
    }
    settings.update(options)
    reason: str | None = None
    leaf = objective.leaf
    lbfgs = Method.LBFGS
    if callback is None:
        optimizer = torch.optim.LBFGS([leaf], max_iter=max_iter, **settings)
        optimizer.step(objective.closure)
    else:
        # one step() call per iteration, so the callback sees every iterate (torch's LBFGS
        # keeps its history between calls); the callback's evaluation costs one per iteration
        settings["max_eval"] = settings["max_eval"] + max_iter
        optimizer = torch.optim.LBFGS([leaf], max_iter=1, **settings)
        for _ in range(max_iter):
            before = leaf.detach().clone()
            optimizer.step(objective.closure)
            value, gradient = objective.evaluate()  # reused by the next step's first call
            if _grad_norm(gradient) <= tol or torch.equal(before, leaf.detach()):
                break  # converged, or the line search found no step (handled below)
            nit = int(optimizer.state[leaf]["n_iter"])
            point = objective.point()
            if _call_back(callback, point, value, gradient, nit, objective.evaluations, lbfgs):
                reason = _CALLBACK_STOP
                break
    value, gradient = objective.evaluate()
    state = optimizer.state[leaf]
    nit = int(state.get("n_iter", 0))
    if reason is None and _grad_norm(gradient) > tol:
        if nit >= max_iter:
            reason = f"reached max_iter = {max_iter} iterations"
        else:
            reason = f"L-BFGS stopped after {nit} iterations: " + _lbfgs_stall(
                state, leaf, value, value_scale
            )
    return _finish(
        objective.point(), value, gradient, nit, objective.evaluations, tol, Method.LBFGS, reason
    )


def _lbfgs_stall(
    state: Mapping[str, Any], leaf: torch.Tensor, value: torch.Tensor, value_scale: float
) -> str:
    """Why torch's L-BFGS ended early: the decrease its last direction d predicts,
    ``-g'd / 2``, against what rounding in f resolves (:func:`_rounding_slack`)."""
    direction = state.get("d")
    if direction is None or leaf.grad is None:
        return "its line search found no step that decreases f"
    predicted = -0.5 * float(_dot(leaf.grad, direction)) / value_scale
    slack = _rounding_slack(value)
    if predicted <= slack:
        return (
            f"the decrease of f that its next step predicts, {predicted:.1e}, is below the "
            f"{slack:.1e} that f = {float(value):.9g} resolves, and its line search compares "
            f"values of f (newton and newton-cg judge such steps by the gradient)"
        )
    return (
        f"its line search found no step that decreases f (the step predicted a decrease of "
        f"{predicted:.1e})"
    )


def _first_order(
    fun: Objective,
    x0: torch.Tensor,
    tol: float | None,
    max_iter: int,
    callback: Callback | None,
    options: dict[str, Any],
    method: Method,
) -> OptimizeResult:
    """Adam or SGD from torch.optim: a fixed budget, or until max|grad| <= tol."""
    optimizer_class = torch.optim.Adam if method is Method.ADAM else torch.optim.SGD
    _reject_options(options, _optimizer_options(optimizer_class), method)
    if method is Method.SGD and "lr" not in options:
        raise ValueError("method 'sgd' needs a learning rate: options={'lr': ...}")
    objective = _AutogradObjective(fun, x0)
    optimizer = optimizer_class([objective.leaf], **options)
    reason: str | None = None
    nit = 0
    while True:
        value, gradient = objective.evaluate()
        if nit > 0 and _call_back(
            callback, objective.point(), value, gradient, nit, objective.evaluations, method
        ):
            reason = _CALLBACK_STOP
            break
        if tol is not None and _grad_norm(gradient) <= tol:
            break
        if nit >= max_iter:
            if tol is not None:
                reason = f"reached max_iter = {max_iter} iterations"
            break
        optimizer.step()
        nit += 1
    return _finish(
        objective.point(), value, gradient, nit, objective.evaluations, tol, method, reason
    )
