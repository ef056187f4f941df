"""fit: the Laplace approximation, the third way probcalc marginalizes.

Find the mode of log p(y, θ) with the core's ``minimize``, take the curvature there (the
core's ``hessian``, or Hessian-vector products for the structures that never form it),
and integrate the Gaussian it defines:

    log p(y) ≈ log p(y, θ*) + d/2 log 2π - ½ log det H,   H = -∇² log p(y, θ*).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse.linalg
import torch
from torch.func import vmap

from ..core.derivatives import hessian as hessian_transform
from ..core.derivatives import hvp_operator, jacobian
from ..core.errors import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError
from ..core.optim import minimize
from ..core.options import Option
from ..core.results import OptimizeResult
from .structures import (
    DiagonalPrecision,
    FullPrecision,
    LowRankPrecision,
    LowRankPrecisionNormal,
    Precision,
    gaussian_log_normalizer,
)

__all__ = ["LaplaceApproximation", "Predictive", "PredictiveMethod", "Repair", "Structure", "fit"]

LogJoint = Callable[[torch.Tensor], torch.Tensor]

# Below this many parameters the diagonal is computed exactly from d Hessian-vector products
# (vmapped); above it, estimated from Rademacher probes (Bekas, Kokiopoulou & Saad, 2007).
_EXACT_DIAGONAL_MAX_DIM = 2048


class Structure(Option):
    """How the posterior precision is represented."""

    FULL = "full"  # the exact Hessian, d x d, Cholesky-factored
    DIAG = "diag"  # its diagonal, from Hessian-vector products; never forms the matrix
    LOWRANK = "lowrank"  # top-k eigenpairs of the likelihood's Hessian (Lanczos) + the prior


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
    """The Gaussian approximation of f(θ) under the posterior: mean (m,), covariance (m, m)."""

    mean: torch.Tensor
    covariance: torch.Tensor


@dataclass(frozen=True)
class LaplaceApproximation:
    """A Gaussian N(mode, H⁻¹) fitted at the posterior mode.

    Attributes:
        mode: θ*, shape (d,).
        structure: "full", "diag" or "lowrank".
        precision_structure: the precision H in that structure (see laplace/structures.py).
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

    def to_constrained(self, phi: torch.Tensor) -> torch.Tensor:
        """θ = T(φ) for points on the fitted scale (the identity without constraints)."""
        return phi if self.transform is None else self.transform(phi)

    @property
    def constrained_mode(self) -> torch.Tensor:
        """T(mode): the mode mapped to the constrained scale (not the constrained mode)."""
        return self.to_constrained(self.mode)

    @property
    def dim(self) -> int:
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

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n posterior draws, shape (n, d), in O(n d k) for "lowrank" and O(n d) for "diag"."""
        generator = torch.Generator(device=self.mode.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        z = torch.randn((n, self.dim), generator=generator, dtype=self.mode.dtype,
                        device=self.mode.device)  # fmt: skip
        return self.mode + self.precision_structure.noise_to_draws(z)

    def predictive(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        method: str | PredictiveMethod = "linearized",
        *,
        n_samples: int = 1000,
        seed: int | None = None,
    ) -> Predictive:
        """The mean and covariance of f(θ), θ ~ N(mode, H⁻¹), for f: (d,) -> (m,) or ().

        "linearized": f(θ*) and J H⁻¹ J' (J from the core's jacobian); "mc": moments over
        ``n_samples`` draws; "unscented": the 2d + 1 sigma points mode ± √d (H⁻¹)^(1/2)
        columns with equal weights 1/(2d) (and 0 at the mode), exact for quadratic f.
        """
        method = PredictiveMethod.parse(method, name="method")

        def vector_f(theta: torch.Tensor) -> torch.Tensor:
            return f(theta).reshape(-1)

        if method is PredictiveMethod.LINEARIZED:
            mean = vector_f(self.mode)
            J = jacobian(vector_f)(self.mode)  # (m, d)
            return Predictive(mean, J @ self.precision_structure.solve(J.T))
        if method is PredictiveMethod.MC:
            values = vmap(vector_f)(self.sample(n_samples, seed=seed))
            return Predictive(values.mean(dim=0), torch.cov(values.T).reshape(values.shape[1], -1))
        d = self.dim
        eye = torch.eye(d, dtype=self.mode.dtype, device=self.mode.device)
        root = math.sqrt(d) * self.precision_structure.noise_to_draws(eye)  # rows: (H^-1/2)' e_i
        points = torch.cat([self.mode + root, self.mode - root])
        values = vmap(vector_f)(points)
        mean = values.mean(dim=0)
        centred = values - mean
        return Predictive(mean, centred.T @ centred / (2 * d))


class _CoordinateTransform:
    """θ = T(φ) coordinate by coordinate, with log|det T'(φ)|, from torch's bijections
    (biject_to(constraints.positive) = exp, biject_to(constraints.unit_interval) = sigmoid)."""

    _KINDS: dict[str, torch.distributions.constraints.Constraint] = {  # noqa: RUF012
        "positive": torch.distributions.constraints.positive,
        "unit": torch.distributions.constraints.unit_interval,
    }

    def __init__(self, kinds: list[str | None], like: torch.Tensor) -> None:
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
            theta = torch.where(mask, self.bijections[kind](phi), theta)
        return theta

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
        total = torch.zeros((), dtype=phi.dtype, device=phi.device)
        for kind, mask in self.masks.items():
            bijection = self.bijections[kind]
            terms = bijection.log_abs_det_jacobian(phi, bijection(phi))
            total = total + torch.where(mask, terms, torch.zeros_like(terms)).sum()
        return total


def _coordinate_kinds(constraints: Any, d: int) -> list[str | None] | None:
    if constraints is None:
        return None
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
    precision = torch.as_tensor(prior_precision, dtype=like.dtype, device=like.device)
    precision = precision.expand(d) if precision.dim() == 0 else precision
    if precision.shape != (d,) or not bool((precision > 0).all()):
        raise ValueError(
            f"prior_precision must be positive, a scalar or shape ({d},), got {prior_precision!r}"
        )
    return precision


def fit(
    log_joint: LogJoint,
    theta0: torch.Tensor,
    *,
    hessian: str | Structure = "full",
    rank: int | None = None,
    optimizer: str = "newton",
    prior_precision: float | torch.Tensor | None = None,
    repair: str | Repair | None = None,
    constraints: str | list[str | None] | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    n_probes: int = 64,
    seed: int | None = None,
) -> LaplaceApproximation:
    """Fit the Laplace approximation N(θ*, H⁻¹) to the posterior ∝ exp(log_joint).

    Args:
        log_joint: log p(y, θ) for θ of shape (d,), returning a 0-d tensor (traceable by
            torch.func). With ``prior_precision`` it is the log likelihood and probcalc adds
            the prior N(0, diag(1 / prior_precision)).
        theta0: where the optimizer starts, shape (d,).
        hessian: "full" (exact Hessian), "diag" (exact from d Hessian-vector products up to
            d = 2048, else estimated from ``n_probes`` Rademacher probes: exact when H is
            diagonal) or "lowrank" (the ``rank`` largest eigenpairs of the likelihood's
            Hessian by Lanczos — scipy's ARPACK on Hessian-vector products — plus the
            prior's diagonal; needs ``prior_precision``).
        rank: the number of eigenpairs for "lowrank".
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
        tol, max_iter: passed to minimize.
        n_probes, seed: for the stochastic diagonal.

    Returns:
        LaplaceApproximation.

    Raises:
        ValueError: theta0 not of shape (d,), an unknown option, a bad prior_precision,
            "lowrank" without rank or prior_precision.
        NonFiniteError: log_joint is not finite at theta0.
        NotPositiveDefiniteError: H at the mode is not positive definite (its smallest
            eigenvalue in the message and the attribute) and no repair was asked for.
    """
    structure = Structure.parse(hessian, name="hessian")
    repair = None if repair is None else Repair.parse(repair, name="repair")
    theta0 = torch.as_tensor(theta0)
    theta0 = theta0.to(torch.float64) if not theta0.is_floating_point() else theta0
    if theta0.dim() != 1 or theta0.numel() == 0:
        raise ValueError(f"theta0 must have shape (d,), got {tuple(theta0.shape)}")
    d = theta0.numel()
    prior = _prior_terms(prior_precision, d, theta0)
    kinds = _coordinate_kinds(constraints, d)
    transform = None if kinds is None else _CoordinateTransform(kinds, theta0)
    if transform is not None:
        user_log_joint = log_joint
        theta0 = transform.inverse(theta0.detach())

        def log_joint(phi: torch.Tensor) -> torch.Tensor:
            return user_log_joint(transform(phi)) + transform.log_abs_det_jacobian(phi)

    if structure is Structure.LOWRANK and (rank is None or prior is None):
        raise ValueError("hessian='lowrank' needs rank= and prior_precision= (its diagonal)")

    def log_prior(theta: torch.Tensor) -> torch.Tensor:
        return -0.5 * (prior * theta * theta).sum() + 0.5 * (
            torch.log(prior).sum() - d * math.log(2 * math.pi)
        )

    def total_log_joint(theta: torch.Tensor) -> torch.Tensor:
        value = log_joint(theta)
        return value if prior is None else value + log_prior(theta)

    start_value = total_log_joint(theta0.detach())
    if not bool(torch.isfinite(start_value)):
        raise NonFiniteError(
            f"log_joint is {float(start_value)} at theta0; start where it is finite",
            value=float(start_value),
            where="theta0",
        )
    result = minimize(lambda t: -total_log_joint(t), theta0.detach(), method=optimizer,
                      tol=tol, max_iter=max_iter)  # fmt: skip
    mode = result.x
    if structure is Structure.FULL:
        precision, note = _full(hessian_transform(lambda t: -total_log_joint(t))(mode), repair)
    elif structure is Structure.DIAG:
        values = _diagonal(lambda t: -total_log_joint(t), mode, n_probes, seed)
        precision, note = _checked_diagonal(values, repair)
    else:
        precision, note = _low_rank(lambda t: -log_joint(t), mode, int(rank), prior, repair)
    if note is not None:
        warnings.warn(ConvergenceWarning(f"laplace.fit: {note}"), stacklevel=2)
    at_mode = total_log_joint(mode)
    log_evidence = at_mode + gaussian_log_normalizer(precision, d)
    scale = "identity" if transform is None else "unconstrained"
    return LaplaceApproximation(mode, structure.value, precision, at_mode, log_evidence, result,
                                note, scale, transform)  # fmt: skip


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
    neg_log_joint: LogJoint, mode: torch.Tensor, n_probes: int, seed: int | None
) -> torch.Tensor:
    """diag(∇² f) from Hessian-vector products: exact (d products) for small d, else the
    unbiased estimate mean_k v_k ⊙ H v_k over Rademacher v_k."""
    operator = hvp_operator(neg_log_joint, mode)
    d = mode.numel()
    if d <= _EXACT_DIAGONAL_MAX_DIM:
        eye = torch.eye(d, dtype=mode.dtype, device=mode.device)
        return torch.diagonal(vmap(operator)(eye))
    generator = torch.Generator(device=mode.device)
    generator.manual_seed(0 if seed is None else seed)
    probes = torch.randint(0, 2, (n_probes, d), generator=generator, device=mode.device)
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
) -> tuple[LowRankPrecision, str | None]:
    """The top eigenpairs of the likelihood's Hessian, by ARPACK's Lanczos on HVPs (dense
    eigh when rank >= d - 1, where ARPACK cannot go)."""
    d = mode.numel()
    if not 1 <= rank <= d:
        raise ValueError(f"rank must be in 1..{d}, got {rank}")
    operator = hvp_operator(neg_log_likelihood, mode)
    if rank >= d - 1:
        eye = torch.eye(d, dtype=mode.dtype, device=mode.device)
        eigenvalues, vectors = torch.linalg.eigh(vmap(operator)(eye))
        eigenvalues, vectors = eigenvalues[-rank:], vectors[:, -rank:]
    else:

        def matvec(v: np.ndarray) -> np.ndarray:
            product = operator(torch.as_tensor(v.reshape(-1), dtype=mode.dtype, device=mode.device))
            return product.detach().cpu().numpy()

        linear = scipy.sparse.linalg.LinearOperator((d, d), matvec=matvec, dtype=np.float64)
        values, vecs = scipy.sparse.linalg.eigsh(linear, k=rank, which="LA")
        eigenvalues = torch.as_tensor(values, dtype=mode.dtype, device=mode.device)
        vectors = torch.as_tensor(vecs, dtype=mode.dtype, device=mode.device)
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
