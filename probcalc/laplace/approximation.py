"""fit: the Laplace approximation of a log joint, the third way probcalc marginalizes.

Find the mode of log p(y, θ) with the core's ``minimize``, take the curvature there (the
core's ``hessian``, or Hessian-vector products for the structures that never form it),
and integrate the Gaussian it defines:

    log p(y) ≈ log p(y, θ*) + d/2 log 2π - ½ log det H,   H = -∇² log p(y, θ*).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import vmap

from ..core.deprecation import renamed
from ..core.derivatives import hessian as hessian_transform
from ..core.derivatives import hvp_operator, jacobian
from ..core.errors import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError
from ..core.evaluation import (
    check_callable,
    check_finite_start,
    check_scalar_output,
    describe_point,
    is_support_error,
    vmap_points,
)
from ..core.optim import Method, minimize
from ..core.options import Option
from ..core.random import Seed, check_seed, generator
from ..core.results import OptimizeResult
from .eigen import check_rank, top_eigenpairs
from .structures import (
    Curvature,
    DiagonalPrecision,
    FullPrecision,
    LowRankPrecision,
    LowRankPrecisionNormal,
    Precision,
    Structure,
    gaussian_log_normalizer,
)

__all__ = [
    "LaplaceApproximation",
    "Predictive",
    "PredictiveMethod",
    "Repair",
    "Structure",
    "fit",
]

LogJoint = Callable[[torch.Tensor], torch.Tensor]
# per coordinate None/"real", "positive" or "unit", or one kind for every coordinate
Constraints = str | Sequence[str | None] | None

# How far the Laplace Gaussian may misjudge the posterior before fit warns: along a principal
# axis at one standard deviation the Gaussian's log density drops by 1/2; fit warns when the
# log joint drops by less than 1/2 / 10 (a flat top, or no maximum at all), by more than
# 1/2 * 10 (curvature that grows fast away from a mode where it nearly vanishes, as for
# exp(-t^4)), or is not finite there (support that ends within one standard deviation).
_GAUSSIAN_DROP = 0.5
_DROP_FACTOR = 10.0
# The number of axes checked: all of them up to this many, else the flattest ones.
_CHECKED_AXES = 16

# Below this many parameters the diagonal is computed exactly from d Hessian-vector products
# (vmapped); above it, estimated from Rademacher probes (Bekas, Kokiopoulou & Saad, 2007).
_EXACT_DIAGONAL_MAX_DIM = 2048


# The optimizers that find a mode to the gradient tolerance the curvature needs (the
# stochastic ones run a fixed budget).
_OPTIMIZERS = (Method.NEWTON, Method.NEWTON_CG, Method.LBFGS)
# The dtypes the curvature's Cholesky and eigendecompositions run in.
_DTYPES = (torch.float32, torch.float64)
# The structures fit keeps (fit_module also keeps "last_layer", a network's last layer).
_STRUCTURES = (Structure.FULL, Structure.DIAG, Structure.LOWRANK)


class Repair(Option):
    """What to do when the precision at the mode is not positive definite."""

    JITTER = "jitter"  # add (|smallest eigenvalue| + δ) to the diagonal
    CLIP = "clip"  # raise every eigenvalue below δ to δ


class PredictiveMethod(Option):
    """How :meth:`LaplaceApproximation.predictive` pushes the Gaussian through f."""

    LINEARIZED = "linearized"  # f(θ*) and J Σ J' with J the Jacobian at the mode
    MC = "mc"  # moments of f over posterior draws
    UNSCENTED = "unscented"  # 2d + 1 sigma points (Julier & Uhlmann)


@dataclass(frozen=True)
class Predictive:
    """The predictive moments that ``predictive`` returns, for :meth:`LaplaceApproximation.
    predictive` and :meth:`probcalc.laplace.ModuleLaplace.predictive` alike.

    Attributes:
        mean: the predictive mean: of f(θ), shape (m,), for ``LaplaceApproximation``; of
            the observation y at each of m inputs, shape (m, k), for ``ModuleLaplace`` (for
            classification the class probabilities, (m, C)).
        covariance: the covariance around ``mean``: (m, m) for ``LaplaceApproximation``
            (between the m outputs of f); one (k, k) block per input, (m, k, k), for
            ``ModuleLaplace`` (J Σ J' + σ² I for regression; diag(p) - pp', the covariance
            of the one-hot label, for classification).
        variance: the diagonal of ``covariance``, the shape of ``mean``; taken from
            ``covariance`` when not given.
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    variance: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.variance is None:
            variance = torch.diagonal(self.covariance, dim1=-2, dim2=-1)
            object.__setattr__(self, "variance", variance)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """``mean, variance = predictive``: deprecated (a DeprecationWarning); use
        ``.mean`` and ``.variance``."""
        warnings.warn(
            "unpacking a Predictive into (mean, variance) is deprecated: use .mean and .variance",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter((self.mean, self.variance))


@dataclass(frozen=True)
class LaplaceApproximation:
    """A Gaussian N(mode, H⁻¹) fitted at the posterior mode.

    Attributes:
        mode: θ*, shape (d,).
        structure: "full", "diag" or "lowrank".
        precision_structure: the precision H in that structure (a FullPrecision,
            DiagonalPrecision or LowRankPrecision).
        log_joint_at_mode: log p(y, θ*) (prior included).
        log_evidence: log p(y, θ*) + d/2 log 2π - ½ log det H. Its gradient with respect to
            parameters log_joint closes over holds the mode fixed: exact for the first term
            (the envelope theorem), not for the log determinant when the mode moves with them.
        optimize_result: the optimizer's OptimizeResult.
        repair: None, or what was done to make H positive definite, with the figure.
        scale: "identity" (θ itself) or "unconstrained" (with ``constraints``: mode, precision
            and samples live on φ, θ = T(φ), and log p includes log|T'(φ)|, as Stan and
            PyMC do; :meth:`to_constrained` maps back).
        transform: θ = T(φ) coordinate-wise: exp for positive, sigmoid for unit-interval
            coordinates, the identity elsewhere.
        prior_precision: the precision (d,) of the N(0, diag(1 / prior_precision)) prior that
            fit added to log_joint on the fitted scale, or None.
        log_density_drops: log p(y, θ* ± s v) - log p(y, θ*) on the fitted scale along up to
            16 axes v (the flattest principal axes of H for "full", coordinate axes
            otherwise), s = (v'∇²v)^(-1/2) one standard deviation along v, shape (2k,) (+s
            first): a Gaussian falls by 1/2 along each. fit warns when one is above -0.05,
            below -5 or not finite.
    """

    mode: torch.Tensor
    structure: str
    precision_structure: Precision
    log_joint_at_mode: torch.Tensor
    log_evidence: torch.Tensor
    optimize_result: OptimizeResult
    repair: str | None
    scale: str = "identity"
    transform: _CoordinateTransform | None = None
    prior_precision: torch.Tensor | None = None
    log_density_drops: torch.Tensor | None = None

    def log_joint_on_fitted_scale(self, log_joint: LogJoint) -> LogJoint:
        """The function this fit approximates, built from a log_joint on the user's scale:
        φ ↦ log_joint(T(φ)) + log|det T'(φ)| (with ``constraints``), plus the Gaussian prior
        (with ``prior_precision``). Its integral over φ is the integral of exp(log_joint)
        over θ: evidence, importance sampling and MCMC started from the fit integrate it.

        Args:
            log_joint: log p(y, θ) on the user's scale, the function the fit was made from:
                of one point θ (d,) -> (), or of a batch (n, d) -> (n,) (then the returned
                function takes batches too, and can be handed to
                :func:`probcalc.mc.importance_sampling` as it is).

        Returns:
            φ (d,) -> () or φ (n, d) -> (n,), as log_joint maps θ.
        """
        check_callable(log_joint, "log_joint")
        return _on_fitted_scale(log_joint, self.transform, self.prior_precision)

    def to_constrained(self, phi: torch.Tensor) -> torch.Tensor:
        """θ = T(φ) for points on the fitted scale (the identity without constraints).

        Args:
            phi: one point (d,) or a batch (n, d) on the fitted scale.

        Returns:
            θ, the shape of ``phi``.
        """
        return phi if self.transform is None else self.transform(phi)

    @property
    def constrained_mode(self) -> torch.Tensor:
        """T(mode): the mode mapped to the constrained scale (not the constrained mode)."""
        return self.to_constrained(self.mode)

    @property
    def dim(self) -> int:
        """d, the number of parameters."""
        return self.mode.numel()

    @property
    def precision(self) -> torch.Tensor:
        """H as a dense (d, d) matrix for "full"; its diagonal (d,) for "diag"; the dense
        matrix for "lowrank" (formed on request: O(d²) memory)."""
        if isinstance(self.precision_structure, FullPrecision):
            return self.precision_structure.matrix
        if isinstance(self.precision_structure, DiagonalPrecision):
            return self.precision_structure.values
        eye = torch.eye(self.dim, dtype=self.mode.dtype, device=self.mode.device)
        return self.precision_structure.matvec(eye)

    @functools.cached_property
    def covariance(self) -> torch.Tensor:
        """H⁻¹, (d, d), computed on first access."""
        return self.precision_structure.covariance()

    def marginal_variances(self) -> torch.Tensor:
        """diag(H⁻¹), shape (d,), without forming H⁻¹ for "diag" and "lowrank"."""
        return self.precision_structure.marginal_variances()

    @property
    def distribution(self) -> torch.distributions.Distribution:
        """The posterior as a torch distribution: MultivariateNormal (full), a diagonal
        Normal (diag), or a LowRankPrecisionNormal that keeps D + U Λ U' (lowrank)."""
        if isinstance(self.precision_structure, DiagonalPrecision):
            scale = torch.rsqrt(self.precision_structure.values)
            return torch.distributions.Independent(torch.distributions.Normal(self.mode, scale), 1)
        if isinstance(self.precision_structure, FullPrecision):
            return torch.distributions.MultivariateNormal(
                self.mode, precision_matrix=self.precision_structure.matrix
            )
        return LowRankPrecisionNormal(self.mode, self.precision_structure)

    @renamed("n", "n_samples")
    def sample(self, n_samples: int, seed: Seed = None) -> torch.Tensor:
        """Posterior draws θ ~ N(mode, H⁻¹), in O(n d k) for "lowrank" and O(n d) for
        "diag", from a generator of their own (torch's global random state is untouched).

        Args:
            n_samples: the number of draws, an integer >= 0 (``n=`` is its deprecated
                name).
            seed: an int (the same draws on every call), a torch.Generator on the mode's
                device (drawn from and advanced), or None (fresh entropy).

        Returns:
            The draws, shape (n_samples, d), on the fitted scale.

        Raises:
            ValueError: n_samples not a non-negative integer; a negative seed; a Generator
                on another device than the mode.
            TypeError: a seed that is not an int, a torch.Generator or None.
        """
        n_samples = _check_count(n_samples, "n_samples", 0)
        source = generator(seed, self.mode.device)
        size = (n_samples, self.dim)
        z = torch.randn(size, generator=source, dtype=self.mode.dtype, device=self.mode.device)
        return self.mode + self.precision_structure.noise_to_draws(z)

    def predictive(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        method: str | PredictiveMethod = "linearized",
        *,
        n_samples: int = 1000,
        seed: Seed = None,
    ) -> Predictive:
        """The mean and covariance of f(θ), θ ~ N(mode, H⁻¹).

        "linearized": f(θ*) and J H⁻¹ J' (J from the core's jacobian); "mc": moments over
        ``n_samples`` draws; "unscented": the 2d + 1 sigma points mode ± √d (H⁻¹)^(1/2)
        columns with equal weights 1/(2d) (and 0 at the mode), exact for quadratic f.

        Args:
            f: a function of one point θ (d,) to an output of shape (m,) or () (treated as
                (1,)), traceable by torch.func.
            method: "linearized", "mc" or "unscented" (or a PredictiveMethod).
            n_samples: the number of draws for "mc", an integer >= 2.
            seed: for "mc": an int, a torch.Generator or None (fresh entropy), as in
                :meth:`sample`.

        Returns:
            Predictive with mean (m,), covariance (m, m) and variance (m,).

        Raises:
            ValueError: an unknown method (the valid ones are listed), "mc" with fewer than
                2 samples, a negative seed.
            TypeError: f not callable, a seed that is not an int, a torch.Generator or None.
            NonFiniteError: f (or, for "linearized", its Jacobian) is NaN or infinite at a
                point it is evaluated at; the message names the point.
        """
        check_callable(f, "f")
        method = PredictiveMethod.parse(method, name="method")
        if method is PredictiveMethod.MC:
            _check_count(n_samples, "n_samples", 2)
            check_seed(seed)

        def vector_f(theta: torch.Tensor) -> torch.Tensor:
            return f(theta).reshape(-1)

        if method is PredictiveMethod.LINEARIZED:
            mean = vector_f(self.mode)
            J = jacobian(vector_f)(self.mode)  # (m, d)
            _check_outputs(torch.cat([mean[None], J.T]), self.mode[None], "f or its Jacobian")
            return Predictive(mean, J @ self.precision_structure.solve(J.T))
        if method is PredictiveMethod.MC:
            draws = self.sample(n_samples, seed=seed)
            values = _check_outputs(vmap(vector_f)(draws), draws, "f")
            return Predictive(values.mean(dim=0), torch.cov(values.T).reshape(values.shape[1], -1))
        d = self.dim
        eye = torch.eye(d, dtype=self.mode.dtype, device=self.mode.device)
        root = math.sqrt(d) * self.precision_structure.noise_to_draws(eye)  # rows: (H^-1/2)' e_i
        points = torch.cat([self.mode + root, self.mode - root])
        values = _check_outputs(vmap(vector_f)(points), points, "f")
        mean = values.mean(dim=0)
        centred = values - mean
        return Predictive(mean, centred.T @ centred / (2 * d))


def _check_outputs(values: torch.Tensor, points: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` (n, m), f at ``points`` (n, d) (or one point (1, d) for rows that all
    belong to it), when all finite.

    Raises:
        NonFiniteError: at the first point with a NaN or infinite value, naming it.
    """
    finite = torch.isfinite(values.detach()).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        point = points[min(row, len(points) - 1)]
        value = float(values[row][~torch.isfinite(values[row])][0])
        raise NonFiniteError(
            f"{what} is {value} at θ = {describe_point(point)} (on the fitted scale); the "
            f"predictive needs finite values",
            value=value,
            where=describe_point(point),
        )
    return values


class _CoordinateTransform:
    """θ = T(φ) coordinate by coordinate, with log|det T'(φ)|, from torch's bijections
    (biject_to(constraints.positive) = exp, biject_to(constraints.unit_interval) = sigmoid)."""

    _KINDS: dict[str, torch.distributions.constraints.Constraint] = {  # noqa: RUF012
        "positive": torch.distributions.constraints.positive,
        "unit": torch.distributions.constraints.unit_interval,
    }

    def __init__(self, kinds: list[str | None], like: torch.Tensor) -> None:
        self.kinds = list(kinds)  # per coordinate: None (real), "positive" or "unit"
        self.masks = {
            kind: torch.tensor([k == kind for k in kinds], device=like.device)
            for kind in self._KINDS
        }
        self.bijections = {
            kind: torch.distributions.biject_to(constraint)
            for kind, constraint in self._KINDS.items()
        }

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        theta = phi
        for kind, mask in self.masks.items():
            theta = torch.where(mask, self._inside(kind, self.bijections[kind](phi)), theta)
        return theta

    @staticmethod
    def _inside(kind: str, theta: torch.Tensor) -> torch.Tensor:
        """T(φ) kept strictly inside the support where exp or sigmoid rounds onto its edge
        (exp(-800) = 0, sigmoid(40) = 1 in float64): a log density at the edge is often NaN
        (0 * log 0), while inside it is finite or -inf, as the integrand's far tail must be.
        The identity wherever T(φ) is representable."""
        info = torch.finfo(theta.dtype)
        if kind == "positive":
            return theta.clamp(min=info.tiny, max=info.max)
        return theta.clamp(min=info.tiny, max=1 - info.eps / 2)

    def inverse(self, theta: torch.Tensor) -> torch.Tensor:
        phi = theta
        for kind, mask in self.masks.items():
            if bool(mask.any()):
                inside = self._KINDS[kind].check(theta[mask])
                if not bool(inside.all()):
                    raise ValueError(
                        f"theta0 has {kind} coordinates outside their support: "
                        f"{theta[mask][~inside].tolist()}"
                    )
            safe = torch.where(mask, theta, torch.full_like(theta, 0.5))
            phi = torch.where(mask, self.bijections[kind].inv(safe), phi)
        return phi

    def log_abs_det_jacobian(self, phi: torch.Tensor) -> torch.Tensor:
        """log|det T'(φ)| for one point φ (d,) -> (), or a batch (n, d) -> (n,)."""
        total = torch.zeros((), dtype=phi.dtype, device=phi.device)
        for kind, mask in self.masks.items():
            bijection = self.bijections[kind]
            terms = bijection.log_abs_det_jacobian(phi, bijection(phi))
            total = total + torch.where(mask, terms, torch.zeros_like(terms)).sum(-1)
        return total


def _on_fitted_scale(
    log_joint: LogJoint,
    transform: _CoordinateTransform | None,
    prior: torch.Tensor | None,
) -> LogJoint:
    """φ ↦ log_joint(T(φ)) + log|det T'(φ)| + log N(φ | 0, diag(1 / prior)), for one point
    φ (d,) or a batch (n, d) (the sums run over the last dimension)."""
    if transform is None and prior is None:
        return log_joint

    def on_fitted_scale(phi: torch.Tensor) -> torch.Tensor:
        if transform is None:
            value = log_joint(phi)
        else:
            value = log_joint(transform(phi)) + transform.log_abs_det_jacobian(phi)
        if prior is not None:
            d = phi.shape[-1]
            value = value + (
                -0.5 * (prior * phi * phi).sum(-1)
                + 0.5 * (torch.log(prior).sum() - d * math.log(2 * math.pi))
            )
        return value

    return on_fitted_scale


def _check_count(value: object, name: str, minimum: int) -> int:
    """``value`` as an int >= minimum; TypeError for a non-number, ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not value >= minimum or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_start_point(theta0: Any, name: str = "theta0") -> torch.Tensor:
    """theta0 as a real floating tensor of shape (d,), finite (integers become float64).

    Args:
        theta0: the start point as the user gave it (a tensor or a sequence of numbers).
        name: how messages name it.

    Returns:
        The start point, shape (d,), float32 or float64.

    Raises:
        TypeError: not numbers; complex, float16 or bfloat16 (the curvature's Cholesky and
            eigendecompositions run in float32 or float64).
        ValueError: not of shape (d,) with d >= 1, or not finite.
    """
    try:
        theta = torch.as_tensor(theta0)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor or a sequence of numbers, got {theta0!r}"
        ) from None
    if theta.is_complex() or (theta.is_floating_point() and theta.dtype not in _DTYPES):
        raise TypeError(
            f"{name} has dtype {theta.dtype}; the Laplace approximation computes in float32 "
            f"or float64 (convert with .to(torch.float64))"
        )
    theta = theta if theta.is_floating_point() else theta.to(torch.float64)
    if theta.dim() != 1 or theta.numel() == 0:
        raise ValueError(f"{name} must have shape (d,) with d >= 1, got {tuple(theta.shape)}")
    if not bool(torch.isfinite(theta).all()):
        raise ValueError(f"{name} must be finite, got {theta.detach().tolist()}")
    return theta


def start_value(log_joint: LogJoint, theta0: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
    """log_joint(theta0), checked: one number, and not an error of torch.distributions'
    argument validation.

    Args:
        log_joint: the function to evaluate (on the fitted scale).
        theta0: the start point on that scale.
        shown: theta0 as the user gave it, for the messages.

    Returns:
        log_joint(theta0), a 0-d tensor (possibly not finite: see
        :func:`probcalc.core.evaluation.check_finite_start`).

    Raises:
        ValueError: log_joint returns other than a 0-d tensor, or a distribution in it
            rejects theta0 (a parameter outside its constraint, a value outside the
            support): the message has torch's.
        TypeError: log_joint returns something that is not a tensor.
    """
    where = f"theta0 = {describe_point(shown)}"
    try:
        value = log_joint(theta0)
    except ValueError as error:
        if not is_support_error(error):
            raise
        raise ValueError(
            f"log_joint cannot be evaluated at {where}: {error}; start inside the support "
            f"of its distributions (or pass constraints= for bounded parameters)"
        ) from error
    return check_scalar_output(value, what="log_joint", where=where)


def rejecting_support_errors(objective: LogJoint) -> LogJoint:
    """``objective`` (a function to minimize) that is +inf, with a zero gradient, where a
    distribution in it rejects the point: a trial step outside a parameter's support (a
    negative scale under a Gamma prior, say) then fails like a step to an infinite value,
    and the line search backs off (scipy's optimizers treat NaN and inf the same way).
    Other errors pass through.

    Args:
        objective: the function to minimize, of one point.

    Returns:
        The guarded objective.
    """

    def guarded(t: torch.Tensor) -> torch.Tensor:
        try:
            return objective(t)
        except ValueError as error:
            if not is_support_error(error):
                raise
            return t.sum() * 0 + torch.inf  # depends on t, so transforms can differentiate it

    return guarded


def _coordinate_kinds(constraints: Any, d: int) -> list[str | None] | None:
    if constraints is None:
        return None
    if not isinstance(constraints, str | Sequence):
        raise TypeError(
            f"constraints must be a kind ('real', 'positive', 'unit') or a sequence of one "
            f"per coordinate, got {constraints!r}"
        )
    kinds = [constraints] * d if isinstance(constraints, str) else list(constraints)
    if len(kinds) != d:
        raise ValueError(f"constraints must name one kind per coordinate (d = {d}), got {kinds}")
    valid = {None, "real", "positive", "unit"}
    bad = [k for k in kinds if k not in valid]
    if bad:
        raise ValueError(f"unknown constraints {bad}; valid: None, 'real', 'positive', 'unit'")
    return [None if k == "real" else k for k in kinds]


def _prior_terms(prior_precision: Any, d: int, like: torch.Tensor) -> torch.Tensor | None:
    if prior_precision is None:
        return None
    try:
        precision = torch.as_tensor(prior_precision, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"prior_precision must be a positive number or a tensor of shape ({d},), got "
            f"{prior_precision!r}"
        ) from None
    precision = precision.expand(d) if precision.dim() == 0 else precision
    finite_positive = bool(((precision > 0) & torch.isfinite(precision)).all())
    if precision.shape != (d,) or not finite_positive:
        raise ValueError(
            f"prior_precision must be positive and finite, a scalar or shape ({d},), got "
            f"{prior_precision!r}"
        )
    return precision


def _choice(
    option: type[Option], value: object, name: str, allowed: Sequence[Option], why: str
) -> Any:
    """``value`` parsed as a member of ``option`` that is in ``allowed``.

    Raises:
        ValueError: an unknown value, listing the allowed ones; a member outside
            ``allowed``, with ``why``.
    """
    valid = ", ".join(repr(member.value) for member in allowed)
    member = next((m for m in option if m is value or m.value == value), None)
    if member is None:
        raise ValueError(f"unknown {name} {value!r}; valid choices are {valid}")
    if member not in allowed:
        raise ValueError(f"{name}={member.value!r} {why}; valid choices are {valid}")
    return member


@renamed("hessian", "structure")
def fit(
    log_joint: LogJoint,
    theta0: torch.Tensor,
    *,
    structure: str | Structure = "full",
    curvature: str | Curvature = "hessian",
    rank: int | None = None,
    optimizer: str | Method = "newton",
    prior_precision: float | torch.Tensor | None = None,
    repair: str | Repair | None = None,
    constraints: Constraints = None,
    tol: float | None = None,
    max_iter: int | None = None,
    n_probes: int = 64,
    seed: Seed = None,
) -> LaplaceApproximation:
    """Fit the Laplace approximation N(θ*, H⁻¹) to the posterior ∝ exp(log_joint).

    The mode θ* by the core's ``minimize``; H = -∇² log_joint(θ*) in the chosen structure;
    log p(y) ≈ log_joint(θ*) + d/2 log 2π - ½ log det H.

    A trial step of the mode search at which a torch.distributions object in log_joint
    rejects its arguments (validation on: a negative scale, a value outside the support)
    counts as a step to log_joint = -inf: "newton" and "newton-cg" back off along the
    line, "lbfgs" stops with NonFiniteError naming the point.

    Args:
        log_joint: log p(y, θ) for θ of shape (d,), returning a 0-d tensor (traceable by
            torch.func). With ``prior_precision`` it is the log likelihood and probcalc adds
            the prior N(0, diag(1 / prior_precision)).
        theta0: where the optimizer starts, shape (d,), float32 or float64 (integers
            become float64).
        structure: how H is kept: "full" (the exact Hessian, Cholesky-factored), "diag"
            (its diagonal: exact from d Hessian-vector products up to d = 2048, else
            estimated from ``n_probes`` Rademacher probes, exact when H is diagonal) or
            "lowrank" (the ``rank`` largest eigenpairs of the likelihood's Hessian, by
            scipy's ARPACK on Hessian-vector products, plus the prior's diagonal; needs
            ``prior_precision``). ``hessian=`` is its deprecated name.
        curvature: "hessian", the only curvature of a log joint (accepted for symmetry
            with :func:`probcalc.laplace.fit_module`, whose "ggn" needs a model's outputs).
        rank: for "lowrank": the number of eigenpairs, an integer with 1 <= rank <= d,
            the same rule as fit_module's (rank = d keeps them all).
        optimizer: "newton", "newton-cg" or "lbfgs" (the core's minimize).
        prior_precision: a positive scalar or (d,) vector: the Gaussian prior's precision.
        repair: None (a non-positive-definite H raises), "jitter" or "clip" (a warning
            with the smallest eigenvalue instead).
        constraints: per coordinate None/"real", "positive" or "unit" (or one kind for all).
            Constrained coordinates are fitted on an unconstrained scale φ (log, logit) with
            the log-Jacobian added to log_joint (the Stan/PyMC convention: the evidence is
            unchanged by the change of variables); theta0 is given on the constrained scale;
            the result's ``scale`` is "unconstrained". A ``prior_precision`` then applies to
            φ, the fitted scale.
        tol: the gradient tolerance of the mode search, passed to minimize (None: its
            default for the dtype).
        max_iter: the iteration budget of the mode search, passed to minimize.
        n_probes: the number of Rademacher probes of the stochastic "diag" (d > 2048).
        seed: what fit draws: the probes of the stochastic "diag", and the start vector of
            the Lanczos iteration of "lowrank" (rank < d - 1). An int gives the same fit on
            every call, a torch.Generator is drawn from (and advanced), None draws fresh
            entropy (two fits then differ: by the probes' estimation error for "diag", in
            the last digits for "lowrank"). "full" and the mode search draw nothing.

    Returns:
        LaplaceApproximation.

    Raises:
        ValueError: theta0 not of shape (d,) or not finite; an unknown option (the valid
            ones are listed; optimizer: "newton", "newton-cg", "lbfgs"); structure
            "last_layer" or curvature "ggn" (fit_module's); a bad prior_precision (not
            positive and finite, wrong shape), n_probes or seed; "lowrank" without
            prior_precision, or without a rank in 1..d; log_joint returning other than one
            number (a 0-d tensor) at theta0; a distribution in log_joint rejecting theta0
            (torch's message included).
        TypeError: log_joint not callable or not returning a tensor; theta0 complex,
            float16 or bfloat16; a constraints, prior_precision or seed of the wrong type;
            hessian= given together with structure=.
        NonFiniteError: log_joint is not finite at theta0.
        NotPositiveDefiniteError: H at the mode is not positive definite (its smallest
            eigenvalue in the message and the attribute) and no repair was asked for.
    """
    check_callable(log_joint, "log_joint")
    why = "keeps a network's last layer: it is fit_module's"
    structure = _choice(Structure, structure, "structure", _STRUCTURES, why)
    why = "linearizes a model's outputs, which a log joint does not have: use fit_module"
    _choice(Curvature, curvature, "curvature", (Curvature.HESSIAN,), why)
    repair = None if repair is None else Repair.parse(repair, name="repair")
    method = Method.parse(optimizer, name="optimizer")
    if method not in _OPTIMIZERS:
        valid = ", ".join(repr(m.value) for m in _OPTIMIZERS)
        raise ValueError(
            f"optimizer {method.value!r} does not find a mode to the accuracy the curvature "
            f"needs; valid choices are {valid}"
        )
    theta0 = as_start_point(theta0)
    d = theta0.numel()
    if structure is Structure.LOWRANK:
        rank = check_rank(rank, d)
    n_probes = _check_count(n_probes, "n_probes", 1)
    check_seed(seed)
    prior = _prior_terms(prior_precision, d, theta0)
    kinds = _coordinate_kinds(constraints, d)
    transform = None if kinds is None else _CoordinateTransform(kinds, theta0)
    shown = theta0.detach()
    if transform is not None:
        theta0 = transform.inverse(theta0.detach())
    if structure is Structure.LOWRANK and prior is None:
        raise ValueError(
            "structure='lowrank' needs prior_precision= (the diagonal its top eigenpairs are "
            "added to)"
        )
    likelihood_on_fitted_scale = _on_fitted_scale(log_joint, transform, None)
    total_log_joint = _on_fitted_scale(log_joint, transform, prior)

    at_start = start_value(total_log_joint, theta0.detach(), shown)
    check_finite_start(at_start, what="log_joint", where="theta0", point=shown)
    objective = rejecting_support_errors(lambda t: -total_log_joint(t))
    result = minimize(objective, theta0.detach(), method=method, tol=tol, max_iter=max_iter)
    mode = result.x
    if structure is Structure.FULL:
        precision, note = _full(hessian_transform(lambda t: -total_log_joint(t))(mode), repair)
    elif structure is Structure.DIAG:
        values = _diagonal(lambda t: -total_log_joint(t), mode, n_probes, seed)
        precision, note = _checked_diagonal(values, repair)
    else:
        precision, note = _low_rank(
            lambda t: -likelihood_on_fitted_scale(t), mode, rank, prior, repair, seed
        )
    if note is not None:
        # stacklevel 3: past the wrapper that maps hessian= to structure=
        warnings.warn(ConvergenceWarning(f"laplace.fit: {note}"), stacklevel=3)
    at_mode = total_log_joint(mode)
    log_evidence = at_mode + gaussian_log_normalizer(precision, d)
    drops = _log_density_drops(total_log_joint, mode.detach(), precision, at_mode.detach())
    mismatch = _gaussian_mismatch(drops)
    if mismatch is not None:
        warnings.warn(ConvergenceWarning(f"laplace.fit: {mismatch}"), stacklevel=3)
    return LaplaceApproximation(
        mode=mode,
        structure=structure.value,
        precision_structure=precision,
        log_joint_at_mode=at_mode,
        log_evidence=log_evidence,
        optimize_result=result,
        repair=note,
        scale="identity" if transform is None else "unconstrained",
        transform=transform,
        prior_precision=prior,
        log_density_drops=drops,
    )


def _checked_axes(precision: Precision, like: torch.Tensor) -> torch.Tensor:
    """Up to _CHECKED_AXES unit directions (k, d): the principal axes of H for "full", the
    coordinate axes elsewhere; the flattest (smallest v'Hv) when there are more."""
    d = like.numel()
    if isinstance(precision, FullPrecision):
        vectors = torch.linalg.eigh(precision.matrix.detach()).eigenvectors  # ascending
        return vectors[:, : min(d, _CHECKED_AXES)].T
    if isinstance(precision, DiagonalPrecision):
        curvature = precision.values.detach()
    else:
        curvature = precision.diagonal + (precision.vectors**2) @ precision.eigenvalues
        curvature = curvature.detach()
    flattest = torch.argsort(curvature)[: min(d, _CHECKED_AXES)]
    axes = torch.zeros((flattest.numel(), d), dtype=like.dtype, device=like.device)
    axes[torch.arange(flattest.numel(), device=like.device), flattest] = 1.0
    return axes


def _log_density_drops(
    log_density: LogJoint, mode: torch.Tensor, precision: Precision, at_mode: torch.Tensor
) -> torch.Tensor:
    """log p(θ* ± s v) - log p(θ*) at one standard deviation s = (v'Hv)^(-1/2) along each
    checked axis v, evaluated in one batch; shape (2k,)."""
    axes = _checked_axes(precision, mode)
    curvature = (axes * precision.matvec(axes.T).T).sum(dim=1).detach()
    if not isinstance(precision, FullPrecision):
        # "diag" and "lowrank" approximate H on purpose: step by the log joint's own
        # curvature v'∇²v (one Hessian-vector product per axis) where it is positive
        operator = hvp_operator(lambda t: -log_density(t), mode)
        exact = (axes * vmap(operator)(axes)).sum(dim=1).detach()
        curvature = torch.where(torch.isfinite(exact) & (exact > 0), exact, curvature)
    steps = axes / torch.sqrt(curvature)[:, None]
    points = torch.cat([mode + steps, mode - steps])
    with torch.no_grad():  # vmappable: fit took its Hessian (jacfwd) or HVPs under vmap
        values = vmap_points(log_density)(points)
    return values.detach() - at_mode


def _gaussian_mismatch(drops: torch.Tensor) -> str | None:
    """A message when the log joint does not fall like the fitted Gaussian, else None."""
    flat, steep = _GAUSSIAN_DROP / _DROP_FACTOR, _GAUSSIAN_DROP * _DROP_FACTOR
    bad = ~torch.isfinite(drops) | (drops > -flat) | (drops < -steep)
    if not bool(bad.any()):
        return None
    worst = drops[bad]
    shown = ", ".join(f"{float(v):.4g}" for v in worst[:4])
    return (
        f"the Gaussian does not fit the posterior: at one standard deviation from the mode "
        f"along {int(bad.sum())} of {drops.numel()} checked directions the log joint changes by "
        f"{shown} (a Gaussian falls by 0.5; outside [{-steep:g}, {-flat:g}] the Laplace "
        f"evidence and covariance are unreliable: a mode where the curvature vanishes, a flat "
        f"top, or a support that ends nearby). Try constraints= for bounded parameters, or "
        f"evidence(method='quadrature' or 'mc')"
    )


def _floor(eigenvalues: torch.Tensor) -> float:
    """The δ a repair raises eigenvalues to: sqrt(eps) times the largest magnitude."""
    largest = float(eigenvalues.abs().max()) if eigenvalues.numel() else 1.0
    return math.sqrt(torch.finfo(eigenvalues.dtype).eps) * max(largest, 1.0)


def _full(H: torch.Tensor, repair: Repair | None) -> tuple[FullPrecision, str | None]:
    H = 0.5 * (H + H.T)
    factor, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        return FullPrecision(H, factor), None
    eigenvalues, vectors = torch.linalg.eigh(H.detach())
    smallest = float(eigenvalues[0])
    if repair is None:
        raise NotPositiveDefiniteError(
            f"the Hessian of -log_joint at the mode is not positive definite: smallest "
            f"eigenvalue {smallest:.6g} (pass repair='jitter' or 'clip' to proceed; the "
            f"evidence is then inflated by the repair)",
            min_eigenvalue=smallest,
        )
    delta = _floor(eigenvalues)
    if repair is Repair.JITTER:
        shift = -smallest + delta
        H = H + shift * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        note = f"smallest eigenvalue {smallest:.6g}: added {shift:.3g} to the diagonal (jitter)"
    else:
        clipped = eigenvalues.clamp(min=delta)
        H = (vectors * clipped) @ vectors.T
        count = int((eigenvalues < delta).sum())
        note = f"smallest eigenvalue {smallest:.6g}: clipped {count} eigenvalues to {delta:.3g}"
    return FullPrecision(H, torch.linalg.cholesky(H)), note


def _diagonal(
    neg_log_joint: LogJoint, mode: torch.Tensor, n_probes: int, seed: Seed
) -> torch.Tensor:
    """diag(∇² f) from Hessian-vector products: exact (d products) for small d, else the
    unbiased estimate mean_k v_k ⊙ H v_k over Rademacher v_k drawn with ``seed``."""
    operator = hvp_operator(neg_log_joint, mode)
    d = mode.numel()
    if d <= _EXACT_DIAGONAL_MAX_DIM:
        eye = torch.eye(d, dtype=mode.dtype, device=mode.device)
        return torch.diagonal(vmap(operator)(eye))
    source = generator(seed, mode.device)
    probes = torch.randint(0, 2, (n_probes, d), generator=source, device=mode.device)
    probes = (2 * probes - 1).to(mode.dtype)
    return (probes * vmap(operator)(probes)).mean(dim=0)


def _checked_diagonal(
    values: torch.Tensor, repair: Repair | None
) -> tuple[DiagonalPrecision, str | None]:
    smallest = float(values.min())
    if smallest > 0:
        return DiagonalPrecision(values), None
    if repair is None:
        raise NotPositiveDefiniteError(
            f"the Hessian's diagonal at the mode has a non-positive entry: {smallest:.6g}",
            min_eigenvalue=smallest,
        )
    delta = _floor(values)
    if repair is Repair.JITTER:
        values = values + (-smallest + delta)
        return DiagonalPrecision(values), f"smallest diagonal {smallest:.6g}: jittered"
    return DiagonalPrecision(values.clamp(min=delta)), f"smallest diagonal {smallest:.6g}: clipped"


def _low_rank(
    neg_log_likelihood: LogJoint,
    mode: torch.Tensor,
    rank: int,
    prior: torch.Tensor,
    repair: Repair | None,
    seed: Seed,
) -> tuple[LowRankPrecision, str | None]:
    """The top eigenpairs of the likelihood's Hessian (:func:`top_eigenpairs` on
    Hessian-vector products) added to the prior's diagonal."""
    operator = hvp_operator(neg_log_likelihood, mode)
    eigenvalues, vectors = top_eigenpairs(operator, rank, mode, seed=seed)
    note = None
    smallest = float(eigenvalues.min())
    if smallest < 0:  # the structure D + U diag(λ) U' needs λ >= 0
        if repair is None:
            raise NotPositiveDefiniteError(
                f"the likelihood's Hessian has a negative eigenvalue among the top {rank}: "
                f"{smallest:.6g} (pass repair='clip' to drop it)",
                min_eigenvalue=smallest,
            )
        note = f"clipped likelihood eigenvalues below 0 (smallest {smallest:.6g}) to 0"
        eigenvalues = eigenvalues.clamp(min=0.0)
    return LowRankPrecision(prior, vectors, eigenvalues), note
