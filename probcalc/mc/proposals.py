"""Proposal distributions for importance sampling.

torch.distributions has a univariate Student-t only; the multivariate one, the heavy-tailed
proposal a Laplace fit suggests for importance sampling, is written here.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Chi2, Distribution, constraints

__all__ = ["MultivariateStudentT"]


class MultivariateStudentT(Distribution):
    """t_ν(loc, L L'): x = loc + L z / sqrt(w / ν), z ~ N(0, I_d), w ~ χ²_ν.

    log p(x) = lgamma((ν + d)/2) - lgamma(ν/2) - d/2 log(νπ) - log|det L|
               - (ν + d)/2 log(1 + |L⁻¹(x - loc)|² / ν).
    """

    arg_constraints = {  # noqa: RUF012 (torch's Distribution API)
        "df": constraints.positive,
        "loc": constraints.real_vector,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, df: float, loc: torch.Tensor, scale_tril: torch.Tensor) -> None:
        if loc.dim() != 1 or scale_tril.shape != (loc.numel(), loc.numel()):
            raise ValueError(
                f"loc must have shape (d,) and scale_tril (d, d), got {tuple(loc.shape)} and "
                f"{tuple(scale_tril.shape)}"
            )
        self.df = torch.as_tensor(df, dtype=loc.dtype, device=loc.device)
        self.loc, self.scale_tril = loc, scale_tril
        super().__init__(event_shape=loc.shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = torch.Size(sample_shape)
        d = self.loc.numel()
        z = torch.randn((*shape, d), dtype=self.loc.dtype, device=self.loc.device)
        w = Chi2(self.df).sample(shape).to(self.loc.dtype)
        return self.loc + (z @ self.scale_tril.T) / torch.sqrt(w / self.df)[..., None]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        d = self.loc.numel()
        centred = (value - self.loc).reshape(-1, d)
        white = torch.linalg.solve_triangular(self.scale_tril, centred.T, upper=False)
        mahalanobis = (white**2).sum(dim=0)
        log_det = torch.log(torch.diagonal(self.scale_tril)).sum()
        nu = self.df
        normalizer = torch.lgamma((nu + d) / 2) - torch.lgamma(nu / 2)
        normalizer = normalizer - 0.5 * d * torch.log(nu * math.pi) - log_det
        out = normalizer - 0.5 * (nu + d) * torch.log1p(mahalanobis / nu)
        return out.reshape(value.shape[:-1])
