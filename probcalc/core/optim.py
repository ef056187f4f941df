"""Minimization and the conjugate-gradient solver that Laplace, newton-cg and TRPO share.

``minimize(fun, x0, method=...)`` returns an :class:`OptimizeResult`. Second-order methods
are written here because torch has none: damped Newton with a Cholesky solve and a
modified Hessian where it is not positive definite, and line-search Newton-CG (truncated
Newton, Nocedal & Wright, Algorithm 7.1) on Hessian-vector products. First-order methods
are torch.optim's: L-BFGS with a strong-Wolfe line search, Adam and SGD.

Every method stops when ``max_i |∂f/∂x_i| <= tol`` (scipy's ``gtol`` and torch's
``tolerance_grad`` use the same infinity norm).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from .derivatives import hessian, hvp_operator, value_and_grad
from .errors import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError
from .options import Option
from .results import ConjugateGradientResult, OptimizeResult

__all__ = ["Method", "conjugate_gradient", "minimize"]

Objective = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[[OptimizeResult], "bool | None"]

# Armijo sufficient-decrease constant and the most halvings a backtracking search tries.
_ARMIJO_C1 = 1e-4
_MAX_BACKTRACKS = 60


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
        x0: the starting guess (default zeros).
        rtol, atol: relative and absolute tolerances on the residual norm.
        max_iter: the most products with ``A`` (default ``10 * b.numel()``).
        preconditioner: ``r -> M⁻¹ r`` for a symmetric positive definite ``M ≈ A``.
        stop_on_negative_curvature: on a direction with ``p'Ap <= 0`` return the iterate so
            far (flagged ``negative_curvature``) instead of raising, as truncated Newton needs.
        truncated: max_iter is a budget, not a failure (TRPO's 10 to 15 steps, truncated
            Newton): ending there unconverged does not warn; ``converged`` still says so.

    Returns:
        ConjugateGradientResult(x, residual_norm, nit, converged, negative_curvature). A run
        that ends without meeting the tolerance warns with ConvergenceWarning.

    Raises:
        ValueError: when ``matvec`` changes the shape, or tolerances are negative.
        NotPositiveDefiniteError: on a direction with ``p'Ap <= 0``; ``min_eigenvalue`` is the
            Rayleigh quotient ``p'Ap / p'p``, an upper bound on A's smallest eigenvalue.
        NonFiniteError: when a product with ``A`` is not finite.
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
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    if not b.is_floating_point():
        raise ValueError(f"b must be floating point, got {b.dtype}")
    max_iter = 10 * b.numel() if max_iter is None else int(max_iter)
    threshold = max(rtol * float(torch.linalg.vector_norm(b)), atol)

    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        if x0.shape != b.shape:
            raise ValueError(f"x0 must have the shape of b {tuple(b.shape)}, got {tuple(x0.shape)}")
        x = x0.detach().clone().to(dtype=b.dtype)
        r = b - _checked_matvec(matvec, x, b)
    residual_norm = float(torch.linalg.vector_norm(r))
    if residual_norm <= threshold:
        return ConjugateGradientResult(x, residual_norm, 0, True)

    z = preconditioner(r) if preconditioner is not None else r
    p = z.clone()
    rz = _dot(r, z)
    for iteration in range(max_iter):
        Ap = _checked_matvec(matvec, p, b)
        curvature = float(_dot(p, Ap))
        if curvature <= 0.0:
            rayleigh = curvature / float(_dot(p, p))
            if stop_on_negative_curvature:
                return ConjugateGradientResult(x, residual_norm, iteration, False, True)
            raise NotPositiveDefiniteError(
                f"the matrix is not positive definite: a CG direction has p'Ap/p'p = "
                f"{rayleigh:.6g} at iteration {iteration}",
                min_eigenvalue=rayleigh,
            )
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        residual_norm = float(torch.linalg.vector_norm(r))
        if residual_norm <= threshold:
            return ConjugateGradientResult(x, residual_norm, iteration + 1, True)
        z = preconditioner(r) if preconditioner is not None else r
        rz_next = _dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    return ConjugateGradientResult(x, residual_norm, max_iter, False)


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

    Stops with ``success=True`` when ``max_i |∂f/∂x_i| <= tol``.

    Args:
        fun: the objective, a function of a tensor of shape ``(d,)`` returning a 0-d tensor.
            "newton" and "newton-cg" differentiate it with torch.func (it must be
            vmap/grad-traceable); "lbfgs", "adam" and "sgd" use plain autograd.
        x0: the starting point, shape ``(d,)``; integers and lists become float64.
        method: "newton", "newton-cg", "lbfgs", "adam" or "sgd" (see :class:`Method`).
        tol: the gradient tolerance; default ``sqrt(eps)`` of x0's dtype (1.5e-8 in float64)
            for newton and newton-cg, ``eps^(1/3)`` (6e-6) for lbfgs, and none for
            "adam"/"sgd", which then run ``max_iter`` steps.
        max_iter: the most iterations (default 100 newton, 200 newton-cg, 1000 otherwise).
        callback: called with an OptimizeResult after every iteration; returning True stops.
            With "lbfgs" a callback costs one extra evaluation of ``fun`` per iteration.
        options: method settings. newton-cg: ``cg_max_iter`` (default ``min(d, 1000)``
            products per Newton step). lbfgs: torch.optim.LBFGS keywords (``history_size``,
            ``lr``, ...). adam / sgd: torch.optim keywords (``lr`` — required for sgd —,
            ``momentum``, ``betas``, ``weight_decay``, ...).

    Returns:
        OptimizeResult(x, fun, grad, nit, nfev, success, message, method). When the
        tolerance is not met, ``success`` is False and a ConvergenceWarning says by how much.

    Raises:
        ValueError: for an unknown method (the message lists the valid ones), an ``x0`` that
            is not of shape ``(d,)`` or not finite, ``fun`` not returning a scalar, or
            unknown options.
        NonFiniteError: when ``fun`` or its gradient is not finite at ``x0`` (and, for
            lbfgs/adam/sgd, at any later iterate: newton methods backtrack instead).

    Example:
        >>> import torch, probcalc as pc
        >>> rosen = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        >>> result = pc.minimize(rosen, torch.tensor([-1.2, 1.0], dtype=torch.float64))
        >>> result.success, result.nit, torch.allclose(result.x, torch.ones(2, dtype=torch.float64))
        (True, 21, True)
    """
    method = Method.parse(method, name="method")
    x0 = _as_start_point(x0)
    if tol is None:
        tol = _default_tolerance(method, x0.dtype)
    elif not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    max_iter = _DEFAULT_MAX_ITER[method] if max_iter is None else int(max_iter)
    if max_iter < 0:
        raise ValueError(f"max_iter must be non-negative, got {max_iter}")
    options = dict(options or {})

    if method in (Method.NEWTON, Method.NEWTON_CG):
        _reject_options(options, {"cg_max_iter"} if method is Method.NEWTON_CG else set(), method)
        cg_max_iter = int(options.get("cg_max_iter", min(x0.numel(), 1000)))
        result = _newton(fun, x0, tol, max_iter, callback, method, cg_max_iter)
    elif method is Method.LBFGS:
        result = _lbfgs(fun, x0, tol, max_iter, callback, options)
    else:
        result = _first_order(fun, x0, tol, max_iter, callback, options, method)
    if not result.success:
        warnings.warn(
            ConvergenceWarning(f"minimize({method.value}): {result.message}"), stacklevel=2
        )
    return result


def _default_tolerance(method: Method, dtype: torch.dtype) -> float | None:
    """sqrt(eps) for the Newton methods; eps^(1/3) for L-BFGS, whose line search runs out of
    precision when a step changes f by less than eps·|f| (max|grad| near 1e-8 on logistic
    regression); none for the stochastic methods."""
    if method in _STOCHASTIC:
        return None
    eps = torch.finfo(dtype).eps
    return eps ** (1.0 / 3.0) if method is Method.LBFGS else math.sqrt(eps)


def _as_start_point(x0: Any) -> torch.Tensor:
    x = torch.as_tensor(x0)
    if not x.is_floating_point():
        x = x.to(torch.float64)
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


def _check_start(value: torch.Tensor, gradient: torch.Tensor, x0: torch.Tensor) -> None:
    if not bool(torch.isfinite(value)):
        raise NonFiniteError(
            f"the objective is {float(value)} at x0 = {_describe(x0)}; start where it is finite",
            value=float(value),
            where="x0",
        )
    if not bool(torch.isfinite(gradient).all()):
        bad = int((~torch.isfinite(gradient)).nonzero()[0])
        raise NonFiniteError(
            f"the gradient at x0 is not finite: grad[{bad}] = {float(gradient[bad])} "
            f"at x0 = {_describe(x0)}",
            value=float(gradient[bad]),
            where="x0",
        )


def _describe(x: torch.Tensor) -> str:
    values = x.reshape(-1)
    if values.numel() <= 6:
        return str([round(float(v), 6) for v in values])
    return f"(d={values.numel()}, first {[round(float(v), 6) for v in values[:3]]} ...)"


def _grad_norm(gradient: torch.Tensor) -> float:
    return float(gradient.detach().abs().max())


def _backtrack(
    fun: Objective, x: torch.Tensor, value: float, slope: float, direction: torch.Tensor
) -> tuple[float, int] | None:
    """Largest t in 1, 1/2, 1/4, ... with f(x + t p) <= f(x) + c1 t g'p (Armijo).

    Non-finite trial values count as failures, so the search steps back into the domain.
    Returns (t, evaluations), or None when no step decreases f.
    """
    step = 1.0
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
    nfev: int,
    tol: float | None,
    method: Method,
    reason: str | None,
) -> OptimizeResult:
    """The OptimizeResult. ``reason`` says why the method stopped short; None means it
    met the gradient tolerance (or, with no tolerance, ran its whole budget)."""
    norm = _grad_norm(gradient)
    if reason is not None:
        message = f"{reason}; max|grad| = {norm:.3e}"
        if tol is not None:
            message += f" (tol = {tol:.3e})"
    elif tol is None:
        message = f"ran the budget of {nit} iterations; max|grad| = {norm:.3e} (no tolerance set)"
    else:
        message = f"converged: max|grad| = {norm:.3e} <= tol = {tol:.3e} after {nit} iterations"
    return OptimizeResult(
        x=x.detach(),
        fun=value.detach(),
        grad=gradient.detach(),
        nit=nit,
        nfev=nfev,
        success=reason is None,
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
    nfev: int,
    method: Method,
) -> bool:
    """Run the callback on the current iterate; True when it asks to stop."""
    if callback is None:
        return False
    state = OptimizeResult(
        x.detach(), value.detach(), gradient.detach(), nit, nfev, False, "in progress", method.value
    )
    return bool(callback(state))


def _newton(
    fun: Objective,
    x: torch.Tensor,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    method: Method,
    cg_max_iter: int,
) -> OptimizeResult:
    """Line-search Newton: a Newton direction, then Armijo backtracking.

    "newton" solves H p = -g with the exact Hessian (:func:`_newton_direction`); "newton-cg"
    solves it by CG on Hessian-vector products (:func:`_newton_cg_direction`), never
    forming H. Both stop when max|g| <= tol.
    """
    value_grad = value_and_grad(fun)
    hess = hessian(fun)
    nfev = 0
    nit = 0
    modified_steps = 0
    reason: str | None = None
    while True:
        if method is Method.NEWTON:
            value, gradient = value_grad(x)
        else:
            operator = hvp_operator(fun, x)  # f, ∇f and the HVP graph in one pass
            value, gradient = operator.value, operator.grad
        nfev += 1
        if nit == 0:
            _check_start(value, gradient, x)
        elif _call_back(callback, x, value, gradient, nit, nfev, method):
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
            direction, modified = _newton_direction(hess(x), gradient)
            modified_steps += modified
        else:
            direction = _newton_cg_direction(operator, gradient, cg_max_iter)
        slope = float(_dot(gradient.detach(), direction.detach()))
        found = _backtrack(fun, x, float(value.detach()), slope, direction.detach())
        if found is None:
            reason = f"the line search found no decrease along the {method.value} direction"
            break
        step, evaluations = found
        nfev += evaluations
        x = (x + step * direction).detach()
        nit += 1
    result = _finish(x, value, gradient, nit, nfev, tol, method, reason)
    if modified_steps:
        note = f" ({modified_steps} steps used a modified Hessian: not positive definite there)"
        result = replace(result, message=result.message + note)
    return result


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
    remembers the last point so that evaluating it twice in a row costs nothing."""

    def __init__(self, fun: Objective, x0: torch.Tensor) -> None:
        self.fun = fun
        self.x = x0.clone().requires_grad_(True)
        self.evaluations = 0
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def closure(self) -> torch.Tensor:
        """f(x) with x.grad set: the closure torch.optim optimizers call."""
        point = self.x.detach()
        if self._last is not None and torch.equal(self._last[0], point):
            self.x.grad = self._last[2].clone()
            return self._last[1]
        self.x.grad = None
        value = self.fun(self.x)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"fun must return a 0-d tensor (a scalar), got {shape}")
        self.evaluations += 1
        if not bool(torch.isfinite(value)):
            where = "x0" if self.evaluations == 1 else f"evaluation {self.evaluations}"
            raise NonFiniteError(
                f"the objective is {float(value.detach())} at {where}, x = {_describe(point)}",
                value=float(value.detach()),
                where=where,
            )
        value.backward()
        if self.evaluations == 1:
            _check_start(value.detach(), self.x.grad, point)
        self._last = (point.clone(), value.detach(), self.x.grad.detach().clone())
        return value.detach()

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), grad f(x)) at the current x."""
        value = self.closure()
        return value, self.x.grad.detach().clone()


def _lbfgs(
    fun: Objective,
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    options: dict[str, Any],
) -> OptimizeResult:
    """torch.optim.LBFGS with a strong-Wolfe line search, stopping on max|grad| <= tol."""
    objective = _AutogradObjective(fun, x0)
    settings = {
        "lr": 1.0,
        "history_size": 20,
        "line_search_fn": "strong_wolfe",
        "tolerance_grad": tol,
        # torch's default stops when |f_k - f_(k-1)| < 1e-9 in absolute terms, long before
        # the gradient tolerance when f is near 0; the gradient decides here
        "tolerance_change": 0.0,
        "max_eval": 2 * max_iter + 10,
    }
    settings.update(options)
    reason: str | None = None
    if callback is None:
        optimizer = torch.optim.LBFGS([objective.x], max_iter=max_iter, **settings)
        optimizer.step(objective.closure)
    else:
        # one step() call per iteration, so the callback sees every iterate (torch's LBFGS
        # keeps its history between calls); the callback's evaluation costs one per iteration
        settings["max_eval"] = settings["max_eval"] + max_iter
        optimizer = torch.optim.LBFGS([objective.x], max_iter=1, **settings)
        for _ in range(max_iter):
            optimizer.step(objective.closure)
            value, gradient = objective.evaluate()  # reused by the next step's first call
            if _grad_norm(gradient) <= tol:
                break
            nit = int(optimizer.state[objective.x]["n_iter"])
            if _call_back(
                callback, objective.x, value, gradient, nit, objective.evaluations, Method.LBFGS
            ):
                reason = _CALLBACK_STOP
                break
    value, gradient = objective.evaluate()
    nit = int(optimizer.state[objective.x].get("n_iter", 0))
    if reason is None and _grad_norm(gradient) > tol:
        if nit >= max_iter:
            reason = f"reached max_iter = {max_iter} iterations"
        else:
            reason = f"L-BFGS stopped after {nit} iterations: f or the step stopped changing"
    return _finish(
        objective.x, value, gradient, nit, objective.evaluations, tol, Method.LBFGS, reason
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
    objective = _AutogradObjective(fun, x0)
    if method is Method.SGD and "lr" not in options:
        raise ValueError("method 'sgd' needs a learning rate: options={'lr': ...}")
    optimizer_class = torch.optim.Adam if method is Method.ADAM else torch.optim.SGD
    optimizer = optimizer_class([objective.x], **options)
    reason: str | None = None
    nit = 0
    while True:
        value, gradient = objective.evaluate()
        if nit > 0 and _call_back(
            callback, objective.x, value, gradient, nit, objective.evaluations, method
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
    return _finish(objective.x, value, gradient, nit, objective.evaluations, tol, method, reason)
