"""Posterior precision structures: full, diagonal, and low rank plus diagonal.

Each knows its log determinant, how to multiply by its inverse (the covariance), its
marginal variances, and how to turn standard normal noise into a posterior draw, without
forming a d x d matrix unless it is the full structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.options import Option

__all__ = [
    "Curvature",
    "DiagonalPrecision",
    "FullPrecision",
    "LowRankPrecision",
    "LowRankPrecisionNormal",
    "Precision",
    "Structure",
]


class Structure(Option):
    """How the posterior precision is kept: ``structure=`` of :func:`probcalc.laplace.fit`
    (the first three) and of :func:`probcalc.laplace.fit_module` (all four)."""

    FULL = "full"  # the whole d x d matrix, Cholesky-factored
    DIAG = "diag"  # its diagonal; the matrix is never formed
    LOWRANK = "lowrank"  # the top-k eigenpairs of the likelihood's curvature + the prior
    LAST_LAYER = "last_layer"  # a network's last nn.Linear only, full (fit_module)


class Curvature(Option):
    """The likelihood curvature: ``curvature=`` of :func:`probcalc.laplace.fit` ("hessian"
    only: a log joint has no outputs to linearize) and :func:`probcalc.laplace.fit_module`."""

    GGN = "ggn"  # generalized Gauss-Newton, J' Λ J: positive semi-definite
    HESSIAN = "hessian"  # the exact Hessian of the negative log-likelihood


@dataclass(frozen=True)
class FullPrecision:
    """H (d, d), positive definite, with its Cholesky factor L (H = L L')."""

    matrix: torch.Tensor
    cholesky: torch.Tensor

    def log_det(self) -> torch.Tensor:
        """log det H, from the Cholesky factor's diagonal."""
        return 2 * torch.log(torch.diagonal(self.cholesky)).sum()

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """H⁻¹ v by the Cholesky factor.

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H⁻¹ v, the shape of ``v``.
        """
        column = v.dim() == 1
        out = torch.cholesky_solve(v[:, None] if column else v, self.cholesky)
        return out[:, 0] if column else out

    def covariance(self) -> torch.Tensor:
        """H⁻¹, shape (d, d)."""
        return torch.cholesky_inverse(self.cholesky)

    def marginal_variances(self) -> torch.Tensor:
        """diag(H⁻¹), shape (d,)."""
        return torch.diagonal(self.covariance())

    def noise_to_draws(self, z: torch.Tensor) -> torch.Tensor:
        """L'⁻¹ z, row by row.

        Args:
            z: standard normal noise, shape (n, d).

        Returns:
            Draws with covariance H⁻¹ and mean 0, shape (n, d).
        """
        return torch.linalg.solve_triangular(self.cholesky.T, z.T, upper=True).T

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v.

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H v, the shape of ``v``.
        """
        return self.matrix @ v


@dataclass(frozen=True)
class DiagonalPrecision:
    """H = diag(values), values > 0."""

    values: torch.Tensor

    def log_det(self) -> torch.Tensor:
        """log det H = Σ log values."""
        return torch.log(self.values).sum()

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """H⁻¹ v, entry by entry.

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H⁻¹ v, the shape of ``v``.
        """
        return v / (self.values if v.dim() == 1 else self.values[:, None])

    def covariance(self) -> torch.Tensor:
        """H⁻¹ as a dense (d, d) matrix."""
        return torch.diag(1 / self.values)

    def marginal_variances(self) -> torch.Tensor:
        """diag(H⁻¹) = 1 / values, shape (d,)."""
        return 1 / self.values

    def noise_to_draws(self, z: torch.Tensor) -> torch.Tensor:
        """z / sqrt(values), row by row.

        Args:
            z: standard normal noise, shape (n, d).

        Returns:
            Draws with covariance H⁻¹ and mean 0, shape (n, d).
        """
        return z / torch.sqrt(self.values)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v.

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H v, the shape of ``v``.
        """
        return (self.values if v.dim() == 1 else self.values[:, None]) * v


@dataclass(frozen=True)
class LowRankPrecision:
    """H = D + U diag(λ) U' with D = diag(diagonal) > 0, U (d, k) orthonormal, λ >= 0.

    Everything goes through the k x k capacitance matrix C = I + B'B, B = D^(-1/2) U diag(√λ)
    (matrix determinant lemma and Woodbury): O(d k²) work, never d x d.
    """

    diagonal: torch.Tensor
    vectors: torch.Tensor
    eigenvalues: torch.Tensor

    @property
    def _b(self) -> torch.Tensor:
        return self.vectors * torch.sqrt(self.eigenvalues) / torch.sqrt(self.diagonal)[:, None]

    def _capacitance(self) -> torch.Tensor:
        b = self._b
        return torch.eye(b.shape[1], dtype=b.dtype, device=b.device) + b.T @ b

    def log_det(self) -> torch.Tensor:
        """log det H = log det D + log det C (the matrix determinant lemma)."""
        return torch.log(self.diagonal).sum() + torch.linalg.slogdet(self._capacitance())[1]

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """(D + U Λ U')⁻¹ v = D^(-1/2) (I - B C⁻¹ B') D^(-1/2) v (Woodbury).

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H⁻¹ v, the shape of ``v``.
        """
        column = v.dim() == 1
        v = v[:, None] if column else v
        scale = torch.rsqrt(self.diagonal)[:, None]
        w = scale * v
        b = self._b
        out = scale * (w - b @ torch.linalg.solve(self._capacitance(), b.T @ w))
        return out[:, 0] if column else out

    def covariance(self) -> torch.Tensor:
        """H⁻¹ as a dense (d, d) matrix (formed on request: O(d²) memory)."""
        d = self.diagonal.numel()
        return self.solve(torch.eye(d, dtype=self.diagonal.dtype, device=self.diagonal.device))

    def marginal_variances(self) -> torch.Tensor:
        """diag(H⁻¹) = 1/D - rowsums((D^(-1/2) B C^(-1/2))²), O(d k²)."""
        b = self._b
        factor = torch.linalg.cholesky(self._capacitance())
        g = torch.linalg.solve_triangular(factor, b.T, upper=False).T  # B L_C'⁻¹
        return (1 - (g**2).sum(dim=1)) / self.diagonal

    def noise_to_draws(self, z: torch.Tensor) -> torch.Tensor:
        """D^(-1/2) (I + B B')^(-1/2) z, with (I + BB')^(-1/2) = I + Q((I + R R')^(-1/2) - I)Q'
        from the thin QR decomposition B = Q R.

        Args:
            z: standard normal noise, shape (n, d).

        Returns:
            Draws with covariance H⁻¹ and mean 0, shape (n, d).
        """
        q, r = torch.linalg.qr(self._b)
        eye = torch.eye(r.shape[0], dtype=r.dtype, device=r.device)
        eigenvalues, vectors = torch.linalg.eigh(eye + r @ r.T)
        inverse_root = (vectors * torch.rsqrt(eigenvalues)) @ vectors.T
        middle = inverse_root - eye
        white = z + (z @ q) @ middle.T @ q.T
        return white / torch.sqrt(self.diagonal)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v = D v + U (λ ⊙ U'v).

        Args:
            v: a vector (d,), or the columns of a matrix (d, m).

        Returns:
            H v, the shape of ``v``.
        """
        diagonal = self.diagonal if v.dim() == 1 else self.diagonal[:, None]
        eigenvalues = self.eigenvalues if v.dim() == 1 else self.eigenvalues[:, None]
        return diagonal * v + self.vectors @ (eigenvalues * (self.vectors.T @ v))


Precision = FullPrecision | DiagonalPrecision | LowRankPrecision


def gaussian_log_normalizer(precision: Precision, d: int) -> torch.Tensor:
    """log ∫ exp(-½ x'Hx) dx = d/2 log 2π - ½ log det H.

    Args:
        precision: H, in any of the three structures.
        d: its size.

    Returns:
        The log normalizer, a 0-d tensor.
    """
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * precision.log_det()


class LowRankPrecisionNormal(torch.distributions.Distribution):
    """N(loc, H⁻¹) with H = D + U diag(λ) U' kept in that form: rsample, log_prob, mean,
    variance and entropy in O(d k²), never a d x d matrix. (torch's
    LowRankMultivariateNormal puts the low rank on the covariance, not the precision.)

    Args:
        loc: the mean, shape (d,).
        precision: H in the low-rank-plus-diagonal structure.
    """

    arg_constraints: dict = {}  # noqa: RUF012 (torch's Distribution API)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, precision: LowRankPrecision) -> None:
        self.loc, self.precision = loc, precision
        super().__init__(event_shape=loc.shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        """loc, shape (d,)."""
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        """diag(H⁻¹), shape (d,)."""
        return self.precision.marginal_variances()

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Reparameterized draws loc + noise_to_draws(z), z from torch's global generator as
        every torch distribution's ``rsample`` draws.

        Args:
            sample_shape: the batch of draws.

        Returns:
            Draws of shape sample_shape + (d,).
        """
        shape = torch.Size(sample_shape)
        size = (shape.numel(), *self.loc.shape)
        z = torch.randn(size, dtype=self.loc.dtype, device=self.loc.device)
        return (self.loc + self.precision.noise_to_draws(z)).reshape(shape + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log N(value | loc, H⁻¹) = -½ (x - loc)'H(x - loc) + ½ log det H - d/2 log 2π.

        Args:
            value: points of shape (..., d).

        Returns:
            Their log densities, shape (...).
        """
        centred = (value - self.loc).reshape(-1, self.loc.numel())
        quadratic = (centred * self.precision.matvec(centred.T).T).sum(dim=1)
        d = self.loc.numel()
        out = -0.5 * quadratic + 0.5 * self.precision.log_det() - 0.5 * d * math.log(2 * math.pi)
        return out.reshape(value.shape[:-1])

    def entropy(self) -> torch.Tensor:
        """d/2 (1 + log 2π) - ½ log det H."""
        d = self.loc.numel()
        return 0.5 * d * (1 + math.log(2 * math.pi)) - 0.5 * self.precision.log_det()
