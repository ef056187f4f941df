"""evidence: one entry point that marginalizes by quadrature, Monte Carlo or Laplace, and
nested_laplace: Laplace over parameters inside quadrature over a few hyperparameters.

    log p(y) = log ∫ p(y, θ) dθ

The methods share work: "mc" draws from a multivariate Student-t built from the Laplace
fit, and "quadrature" integrates in the Laplace fit's whitened coordinates φ = φ* + L z.
Both integrate on the fit's scale: with ``constraints`` the fit lives on unconstrained
coordinates φ, θ = T(φ), and the integrand is log p(y, T(φ)) + log|det T'(φ)|, so every
method estimates the same p(y).
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .core.deprecation import deprecated_field, renamed
from .core.errors import NonFiniteError
from .core.evaluation import (
    check_callable,
    check_finite_start,
    check_scalar_output,
    vmap_points,
)
from .core.options import Option
from .core.random import Seed, check_seed
from .integrate import expect_normal, gauss_legendre, log_integral
from .laplace import LaplaceApproximation, fit
from .laplace.approximation import Constraints, as_start_point, start_value
from .mc import importance_sampling
from .mc.proposals import MultivariateStudentT

__all__ = ["Evidence", "EvidenceMethod", "NestedLaplaceResult", "evidence", "nested_laplace"]

_QUADRATURE_MAX_DIM = 6
# The draws of "mc" by default, and the fewest importance sampling takes (it fits the tail of
# the weights).
_DEFAULT_SAMPLES = 20_000
_MIN_SAMPLES = 10

LogJoint = Callable[[torch.Tensor], torch.Tensor]


class EvidenceMethod(Option):
    """The methods of :func:`evidence`."""

    QUADRATURE = "quadrature"  # adaptive cubature, d <= 6
    MC = "mc"  # importance sampling from a Student-t around the Laplace fit
    LAPLACE = "laplace"  # the Gaussian at the mode


@dataclass(frozen=True)
class Evidence:
    """log p(y) by one method.

    Attributes:
        log_evidence: the log evidence (a 0-d tensor, differentiable with respect to
            parameters log_joint closes over; for "laplace" with the mode held fixed).
            ``log_value`` is its deprecated name.
        error: the method's estimate of the error of ``log_evidence``, a detached 0-d
            tensor: the quadrature's error bound, importance sampling's standard error, or
            inf for "laplace", whose error is not estimated.
        method: "quadrature", "mc" or "laplace".
        diagnostics: method-specific figures (k-hat and ESS for mc, evaluations for
            quadrature, the mode for laplace).
    """

    log_evidence: torch.Tensor
    error: torch.Tensor
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    log_value = deprecated_field("log_value", "log_evidence")


def _check_start(log_joint: LogJoint, theta0: torch.Tensor) -> None:
    """log_joint at theta0: one finite number (see
    :func:`probcalc.laplace.approximation.start_value`)."""
    value = start_value(log_joint, theta0, theta0)
    check_finite_start(value, what="log_joint", where="theta0", point=theta0)


def _check_samples(n_samples: object) -> int:
    """``n_samples`` as an int >= 10 (what importance sampling needs)."""
    integer = isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool)
    if not integer or n_samples < _MIN_SAMPLES:
        raise ValueError(
            f"n_samples must be an integer >= {_MIN_SAMPLES} (importance sampling fits the "
            f"tail of its weights), got {n_samples!r}"
        )
    return int(n_samples)


def _check_bounds(bounds: Any, name: str, *, finite: bool) -> list[tuple[float, float]]:
    """bounds as a list of (low, high) floats with low < high (finite ones, with
    ``finite``); TypeError or ValueError naming ``name`` otherwise."""
    pairs = []
    if isinstance(bounds, str) or not isinstance(bounds, Sequence | torch.Tensor):
        raise TypeError(f"{name} must be a sequence of (low, high) pairs, got {bounds!r}")
    if len(bounds) == 0:
        raise ValueError(f"{name} must hold one (low, high) pair per dimension, got none")
    for pair in bounds:
        try:
            low, high = (float(end) for end in pair)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a sequence of (low, high) pairs of numbers, got {bounds!r}"
            ) from None
        if not low < high or (finite and not math.isfinite(low - high)):
            kind = "finite numbers with low < high" if finite else "low < high (±inf allowed)"
            raise ValueError(f"{name} must be pairs of {kind}, got {list(bounds)!r}")
        pairs.append((low, high))
    return pairs


@renamed("n", "n_samples")
def evidence(
    log_joint: LogJoint,
    *,
    method: str | EvidenceMethod = "laplace",
    theta0: torch.Tensor | None = None,
    bounds: Sequence[tuple[float, float]] | None = None,
    n_samples: int | None = None,
    seed: Seed = None,
    laplace: LaplaceApproximation | None = None,
    constraints: Constraints = None,
    proposal: torch.distributions.Distribution | None = None,
    df: float = 5.0,
    rtol: float | None = None,
) -> Evidence:
    """log p(y) = log ∫ p(y, θ) dθ by quadrature, importance sampling or Laplace.

    Args:
        log_joint: log p(y, θ) of one point θ, shape (d,) -> 0-d (vmapped where a batch is
            needed, so it must be torch.func-traceable).
        method: "laplace", "quadrature" (d <= 6) or "mc".
        theta0: where the Laplace fit starts, on the scale of log_joint (needed unless
            ``laplace`` or, for quadrature, ``bounds`` are given).
        bounds: for "quadrature", a box [(low, high)] * d of θ to integrate over directly;
            without it the integral runs over all of R^d in the Laplace fit's whitened
            coordinates φ = φ* + L z.
        n_samples: the draws of "mc", an integer >= 10 (None: 20,000). ``n=`` is its
            deprecated name.
        seed: the draws' randomness for "mc": an int (the same estimate on every call), a
            torch.Generator (drawn from and advanced) or None (fresh entropy). The other
            methods draw nothing.
        laplace: a fitted LaplaceApproximation to reuse. Its scale is kept: with
            constraints, "quadrature" and "mc" integrate log_joint(T(φ)) + log|det T'(φ)|
            over the unconstrained φ; with a prior_precision, its Gaussian prior is added to
            log_joint, as fit added it. log_joint must then be the function the fit was made
            from: a different value at the fit's mode raises ValueError for "laplace" and
            warns otherwise.
        constraints: for the Laplace fit that evidence makes itself: per coordinate
            None/"real", "positive" or "unit" (see :func:`probcalc.laplace.fit`); every
            method then works on the unconstrained scale, as above.
        proposal: for "mc", a distribution with event shape (d,) on the fit's scale (φ with
            constraints) instead of the default multivariate Student-t at the Laplace mode
            and covariance.
        df: the default Student-t proposal's degrees of freedom, a positive number.
        rtol: the tolerance of the quadrature; by default the integrators' for the dtype
            (1e-8 in float64, 1.2e-4 in float32: the dtype of theta0 or of the fit).

    Returns:
        Evidence(log_evidence, error, method, diagnostics), ``error`` a 0-d tensor (inf
        for "laplace").

    Raises:
        ValueError: an unknown method; quadrature with d > 6 (use "laplace" or "mc"); bounds
            or a proposal of the wrong dimension, bounds that are empty or NaN or have
            low >= high; no theta0 where one is needed, a theta0 not of shape (d,) or not
            finite; constraints together with laplace= or bounds=; a df that is not
            positive; n_samples below 10; a negative seed; for "laplace", a laplace= fit
            whose value at its mode is not log_joint's; log_joint returning other than one
            number (a 0-d tensor) per point, at its first call; a distribution in log_joint
            rejecting theta0 (torch's message included).
        TypeError: log_joint not callable; theta0 complex, float16 or bfloat16; laplace=
            not a LaplaceApproximation, proposal= not a torch Distribution, bounds not
            (low, high) pairs of numbers, a seed that is not an int, a torch.Generator or
            None; n= given together with n_samples=.
        NonFiniteError: log_joint not finite at theta0.
        NotPositiveDefiniteError: from the Laplace fit, at a mode whose Hessian is not
            positive definite.
    """
    check_callable(log_joint, "log_joint")
    method = EvidenceMethod.parse(method, name="method")
    if laplace is not None and not isinstance(laplace, LaplaceApproximation):
        raise TypeError(
            f"laplace must be a LaplaceApproximation (from probcalc.laplace.fit), got "
            f"{type(laplace).__name__}"
        )
    if proposal is not None and not isinstance(proposal, torch.distributions.Distribution):
        raise TypeError(
            f"proposal must be a torch.distributions.Distribution, got {type(proposal).__name__}"
        )
    if isinstance(df, bool) or not isinstance(df, numbers.Real) or not 0 < df < math.inf:
        raise ValueError(f"df must be a positive finite number, got {df!r}")
    n_samples = _DEFAULT_SAMPLES if n_samples is None else _check_samples(n_samples)
    check_seed(seed)
    if bounds is not None:
        bounds = _check_bounds(bounds, "bounds", finite=False)
    if constraints is not None and (laplace is not None or bounds is not None):
        raise ValueError(
            "constraints= sets up the Laplace fit that evidence makes itself; a laplace= fit "
            "keeps its own constraints, and bounds= integrates θ directly"
        )
    if laplace is None and theta0 is None and not (method is EvidenceMethod.QUADRATURE and bounds):
        raise ValueError(f"method={method.value!r} needs theta0 (or a fitted laplace=)")
    if theta0 is not None:
        theta0 = as_start_point(theta0)
    d = laplace.dim if laplace is not None else (len(bounds) if theta0 is None else theta0.numel())
    if method is EvidenceMethod.MC and proposal is not None and proposal.event_shape != (d,):
        raise ValueError(
            f"the proposal must have event shape ({d},), got {tuple(proposal.event_shape)}"
        )
    if theta0 is not None:
        _check_start(log_joint, theta0)
    # the dtype the integrals run in: the fit's or theta0's, else (bounds alone) float64
    if laplace is not None:
        dtype = laplace.mode.dtype
    else:
        dtype = theta0.dtype if theta0 is not None else torch.float64

    if method is EvidenceMethod.QUADRATURE:
        if d > _QUADRATURE_MAX_DIM:
            raise ValueError(
                f"method='quadrature' integrates d <= {_QUADRATURE_MAX_DIM} dimensions, got "
                f"d = {d}; use method='laplace' (fast, approximate) or method='mc' "
                f"(importance sampling from the Laplace fit, with a standard error)"
            )
        if bounds is not None:
            if len(bounds) != d:
                raise ValueError(f"bounds must give {d} (low, high) pairs, got {len(bounds)}")
            device = theta0.device if theta0 is not None else None
            lower = torch.tensor([low for low, _ in bounds], dtype=dtype, device=device)
            upper = torch.tensor([high for _, high in bounds], dtype=dtype, device=device)
            integrand = vmap_points(log_joint, scalar="log_joint")
            result = log_integral(integrand, lower, upper, rtol=rtol)
            diagnostics = {"n_evals": result.n_evals, "converged": result.converged}
            return Evidence(result.value, result.error.detach(), method.value, diagnostics)
        laplace = laplace or fit(log_joint, theta0, constraints=constraints)
        return _whitened_quadrature(_fitted_target(log_joint, laplace, method), laplace, rtol)

    laplace = laplace or fit(log_joint, theta0, constraints=constraints)
    target = _fitted_target(log_joint, laplace, method)
    if method is EvidenceMethod.LAPLACE:
        mode = laplace.mode
        unknown = torch.tensor(math.inf, dtype=mode.dtype, device=mode.device)
        diagnostics = {"mode": mode, "repair": laplace.repair}
        return Evidence(laplace.log_evidence, unknown, method.value, diagnostics)
    if proposal is None:
        scale = torch.linalg.cholesky(laplace.covariance.detach())
        proposal = MultivariateStudentT(df, laplace.mode.detach(), scale)
    batched = vmap_points(target, scalar="log_joint")
    result = importance_sampling(batched, proposal, n_samples, seed=seed)
    diagnostics = {"khat": result.khat, "ess": result.ess, "scale": laplace.scale}
    return Evidence(result.log_evidence, result.stderr.detach(), method.value, diagnostics)


def _fitted_target(
    log_joint: LogJoint, laplace: LaplaceApproximation, method: EvidenceMethod
) -> LogJoint:
    """log_joint on the fit's scale (see LaplaceApproximation.log_joint_on_fitted_scale),
    checked against the value the fit recorded at its mode."""
    target = laplace.log_joint_on_fitted_scale(log_joint)
    mode = laplace.mode.detach()
    with torch.no_grad():
        value = check_scalar_output(target(mode), what="log_joint", where="the fit's mode")
        here = float(value)
    recorded = float(laplace.log_joint_at_mode.detach())
    # sqrt(eps) relative: 1.5e-8 in float64; a function computed another way (vmapped,
    # summed in another order) agrees to far better, a different model to far worse
    agreement = math.sqrt(torch.finfo(mode.dtype).eps)
    if not abs(here - recorded) <= agreement * max(1.0, abs(recorded)):
        message = (
            f"the laplace= fit was not made from this log_joint: on the fit's scale "
            f"({laplace.scale}) log_joint gives {here:.10g} at the fit's mode, the fit "
            f"recorded {recorded:.10g}"
        )
        if method is EvidenceMethod.LAPLACE:
            raise ValueError(message + "; its Laplace evidence is not this model's")
        warnings.warn(message + "; it serves only as the proposal or coordinates", stacklevel=3)
    return target


# Up to this dimension the whitened integral runs on adaptive cubature over R^d; above it,
# Gauss-Hermite on the ratio p(y, θ) / N(θ | θ*, Σ) (product rule to 4-D, sparse beyond),
# which converges fast when the posterior is near its Laplace Gaussian and needs far fewer
# points than an adaptive product rule in 3 to 6 dimensions.
_ADAPTIVE_WHITENED_MAX_DIM = 2


def _whitened_quadrature(
    log_joint: LogJoint, laplace: LaplaceApproximation, rtol: float | None
) -> Evidence:
    """log ∫ p(y, φ) dφ with φ = φ* + L z (L L' = Σ, the Laplace covariance), log_joint on
    the fit's scale."""
    d = laplace.dim
    mode = laplace.mode.detach()
    factor = torch.linalg.cholesky(laplace.covariance.detach())
    log_det = torch.log(torch.diagonal(factor)).sum()
    if d <= _ADAPTIVE_WHITENED_MAX_DIM:

        def whitened(z: torch.Tensor) -> torch.Tensor:
            return log_joint(mode + factor @ z) + log_det

        infinite = torch.full((d,), math.inf, dtype=mode.dtype, device=mode.device)
        integrand = vmap_points(whitened, scalar="log_joint")
        try:
            result = log_integral(integrand, -infinite, infinite, rtol=rtol)
        except NonFiniteError as error:
            raise _on_user_scale(error, laplace, factor) from error
        diagnostics = {"n_evals": result.n_evals, "converged": result.converged}
        diagnostics["rule"] = "adaptive"
        return Evidence(result.value, result.error.detach(), "quadrature", diagnostics)
    # Z = Z_laplace E_q[r], r = p(y, θ) / (Z_laplace q(θ)) ≈ 1 near a Gaussian posterior
    gaussian = torch.distributions.MultivariateNormal(mode, scale_tril=factor)
    log_laplace = laplace.log_evidence.detach()

    batched = vmap_points(log_joint, scalar="log_joint")

    def ratio(theta: torch.Tensor) -> torch.Tensor:
        return torch.exp(batched(theta) - gaussian.log_prob(theta) - log_laplace)

    result = expect_normal(ratio, mode, factor @ factor.T, rtol=rtol)
    value = log_laplace + torch.log(result.value)
    # the error of log Z = log Z_laplace + log E_q[r] is the relative error of E_q[r]
    error = (result.error / result.value).detach()
    diagnostics = {"n_evals": result.n_evals, "converged": result.converged}
    return Evidence(value, error, "quadrature", {**diagnostics, "rule": "gauss-hermite"})


def _on_user_scale(
    error: NonFiniteError, laplace: LaplaceApproximation, factor: torch.Tensor
) -> NonFiniteError:
    """The integrand's non-finite value at a whitened node z, reported at θ = T(φ* + L z)."""
    try:
        z = torch.tensor(json.loads(error.where), dtype=factor.dtype, device=factor.device)
    except (TypeError, ValueError):  # the node held a NaN or inf itself
        return error
    theta = laplace.to_constrained(laplace.mode.detach() + factor @ z.reshape(-1))
    return NonFiniteError(
        f"log_joint is {error.value} at θ = {theta.tolist()}, a node of the quadrature in the "
        f"Laplace fit's whitened coordinates z = {z.tolist()}; a log density that is NaN "
        f"far in the tails often comes from a float32 parameter (float32 overflows where "
        f"float64 does not)",
        value=error.value,
        where=str(theta.tolist()),
    )


@dataclass(frozen=True)
class NestedLaplaceResult:
    """The outcome of :func:`nested_laplace`.

    Attributes:
        log_evidence: log p(y) = log ∫ p(y | h) p(h) dh by the quadrature over h, a 0-d
            tensor.
        hyper_grid: row i holds hyperparameter i's quadrature nodes, shape (d_h, n) for n
            nodes per hyperparameter (``hyper_grid[i]`` is hyperparameter i's grid).
        hyper_density: row i holds hyperparameter i's normalized marginal posterior
            density at those nodes, shape (d_h, n).
        theta_mean: the posterior mean of θ, the mixture over nodes of the conditional
            Laplace fits, shape (d,).
        theta_var: the posterior variance of θ under that mixture, shape (d,).
        log_conditional: log p(y, h_j) = the Laplace evidence of θ at every node, shape
            (n^d_h,).
        nodes: the hyperparameter nodes, shape (n^d_h, d_h).
    """

    log_evidence: torch.Tensor
    hyper_grid: torch.Tensor
    hyper_density: torch.Tensor
    theta_mean: torch.Tensor
    theta_var: torch.Tensor
    log_conditional: torch.Tensor
    nodes: torch.Tensor


def nested_laplace(
    log_joint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    *,
    hyper_bounds: Sequence[tuple[float, float]],
    n_nodes: int | None = None,
) -> NestedLaplaceResult:
    """Laplace over θ inside Gauss-Legendre quadrature over a few hyperparameters h (INLA).

    For every node h_j of the tensor-product rule on ``hyper_bounds``, the Laplace fit of
    θ ↦ log p(y, θ, h_j) gives log p(y, h_j) and N(θ*_j, Σ_j); then
    p(y) ≈ Σ_j w_j p(y, h_j), p(h_j | y) = p(y, h_j) / p(y), and θ's posterior is the
    mixture Σ_j w_j p(h_j | y) N(θ*_j, Σ_j). Each fit starts from the previous mode.

    Args:
        log_joint: log p(y, θ, h) for θ (d,) and h (d_h,), h on the unconstrained scale with
            its hyperprior (and any log-Jacobian) included.
        theta0: where the first fit starts, shape (d,).
        hyper_bounds: [(low, high)] for each of d_h <= 3 hyperparameters, covering their
            posterior mass.
        n_nodes: nodes per hyperparameter (default 40, 16, 10 for d_h = 1, 2, 3).

    Returns:
        NestedLaplaceResult. Nothing is drawn: the result is a deterministic function of
        the inputs.

    Raises:
        ValueError: d_h not in 1..3; bounds that are empty, not finite or have low >= high;
            n_nodes not a positive integer; theta0 not of shape (d,) or not finite;
            log_joint returning other than one number (a 0-d tensor) at (theta0, h).
        TypeError: log_joint not callable, hyper_bounds not (low, high) pairs of numbers,
            theta0 complex.
    """
    check_callable(log_joint, "log_joint")
    hyper_bounds = _check_bounds(hyper_bounds, "hyper_bounds", finite=True)
    d_h = len(hyper_bounds)
    if not 1 <= d_h <= 3:
        raise ValueError(f"nested_laplace handles 1 to 3 hyperparameters, got {d_h}")
    if n_nodes is not None and (
        isinstance(n_nodes, bool) or not isinstance(n_nodes, numbers.Integral) or n_nodes < 1
    ):
        raise ValueError(f"n_nodes must be a positive integer or None, got {n_nodes!r}")
    n_nodes = n_nodes or {1: 40, 2: 16, 3: 10}[d_h]
    theta0 = as_start_point(theta0).to(torch.float64)
    dtype = theta0.dtype
    nodes_1d, weights_1d = gauss_legendre(n_nodes, dtype=dtype)
    grids, weight_axes = [], []
    for low, high in hyper_bounds:
        grids.append(low + (high - low) * (nodes_1d + 1) / 2)
        weight_axes.append(weights_1d * (high - low) / 2)
    nodes = torch.cartesian_prod(*grids).reshape(-1, d_h)
    weights = torch.cartesian_prod(*weight_axes).reshape(-1, d_h).prod(dim=1)
    log_conditional, means, variances = [], [], []
    start = theta0
    for h in nodes:
        la = fit(lambda theta, h=h: log_joint(theta, h), start)
        log_conditional.append(la.log_evidence.detach())
        means.append(la.mode)
        variances.append(la.marginal_variances())
        start = la.mode
    log_conditional = torch.stack(log_conditional)
    log_weighted = log_conditional + torch.log(weights)
    log_evidence = torch.logsumexp(log_weighted, dim=0)
    posterior = torch.exp(log_weighted - log_evidence)  # w_j p(h_j | y): sums to 1
    means, variances = torch.stack(means), torch.stack(variances)
    theta_mean = (posterior[:, None] * means).sum(dim=0)
    theta_var = (posterior[:, None] * (variances + means**2)).sum(dim=0) - theta_mean**2
    density = torch.exp(log_conditional - log_evidence).reshape((n_nodes,) * d_h)
    weight_grid = weights.reshape((n_nodes,) * d_h)
    hyper_density = []
    for i in range(d_h):
        others = tuple(j for j in range(d_h) if j != i)
        # integrate the other hyperparameters out with their quadrature weights
        per_node = (density * weight_grid).sum(dim=others) if others else density * weight_grid
        hyper_density.append(per_node / weight_axes[i])
    return NestedLaplaceResult(
        log_evidence=log_evidence,
        hyper_grid=torch.stack(grids),
        hyper_density=torch.stack(hyper_density),
        theta_mean=theta_mean,
        theta_var=theta_var,
        log_conditional=log_conditional,
        nodes=nodes,
    )
