"""The Laplace approximation: the third way probcalc marginalizes.

``fit(log_joint, theta0, hessian="full" | "diag" | "lowrank")`` finds the mode with the
core's ``minimize``, takes the curvature with the core's ``hessian`` or Hessian-vector
products, and returns a :class:`LaplaceApproximation` with the log evidence, the posterior
Gaussian, samples, marginal variances and predictive moments.
"""

from .fit import LaplaceApproximation, Predictive, PredictiveMethod, Repair, Structure, fit
from .structures import DiagonalPrecision, FullPrecision, LowRankPrecision

__all__ = [
    "DiagonalPrecision",
    "FullPrecision",
    "LaplaceApproximation",
    "LowRankPrecision",
    "Predictive",
    "PredictiveMethod",
    "Repair",
    "Structure",
    "fit",
]
