"""The Laplace approximation: the third way probcalc marginalizes.

``fit(log_joint, theta0, hessian="full" | "diag" | "lowrank")`` finds the mode with the
core's ``minimize``, takes the curvature with the core's ``hessian`` or Hessian-vector
products, and returns a :class:`LaplaceApproximation` with the log evidence, the posterior
Gaussian, samples, marginal variances and predictive moments. ``fit_module`` does the same
for a trained nn.Module (GGN or Hessian curvature; full, diag, lowrank or last-layer), with
evidence-based prior precision and noise.
"""

from .fit import LaplaceApproximation, Predictive, PredictiveMethod, Repair, Structure, fit
from .module import (
    Curvature,
    Likelihood,
    LinkApprox,
    ModuleLaplace,
    ModuleStructure,
    expected_softmax,
    fit_module,
)
from .structures import DiagonalPrecision, FullPrecision, LowRankPrecision

__all__ = [
    "Curvature",
    "DiagonalPrecision",
    "FullPrecision",
    "LaplaceApproximation",
    "Likelihood",
    "LinkApprox",
    "LowRankPrecision",
    "ModuleLaplace",
    "ModuleStructure",
    "Predictive",
    "PredictiveMethod",
    "Repair",
    "Structure",
    "expected_softmax",
    "fit",
    "fit_module",
]
