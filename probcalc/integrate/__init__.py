"""Numerical integration, differentiable and batched: the first way probcalc marginalizes.

``quad`` (1-D, globally adaptive Gauss-Kronrod), ``cubature`` (boxes: adaptive product
Gauss-Kronrod, Gauss-Legendre, Smolyak sparse grids, scrambled Sobol QMC),
``log_integral`` (the log of the integral of exp(log_f), for unnormalized posteriors) and
``expect_normal`` (Gauss-Hermite expectations). Every value is a tensor with its autograd
graph, every round of refinement is one call of the integrand.
"""

from .cubature import CubatureRule, cubature
from .log_integral import log_integral
from .normal import NormalRule, expect_normal
from .quad import quad
from .rules import gauss_hermite, gauss_kronrod, gauss_legendre
from .sparse import smolyak

__all__ = [
    "CubatureRule",
    "NormalRule",
    "cubature",
    "expect_normal",
    "gauss_hermite",
    "gauss_kronrod",
    "gauss_legendre",
    "log_integral",
    "quad",
    "smolyak",
]
