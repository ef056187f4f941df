"""The Laplace approximation: the third way probcalc marginalizes.

``fit(log_joint, theta0, structure="full" | "diag" | "lowrank")`` finds the mode with the
core's ``minimize``, takes the curvature with the core's ``hessian`` or Hessian-vector
products, and returns a :class:`LaplaceApproximation` with the log evidence, the posterior
Gaussian, samples, marginal variances and predictive moments. ``fit_module`` does the same
for a trained nn.Module (``curvature="ggn"`` or ``"hessian"``; ``structure="full"``,
``"diag"``, ``"lowrank"`` or ``"last_layer"``), with evidence-based prior precision and
noise. Both take the same ``structure=``, ``curvature=`` and ``rank=`` and return the same
:class:`Predictive` from ``predictive``.
"""

import warnings

from .approximation import LaplaceApproximation, Predictive, PredictiveMethod, Repair, fit
from .module import Likelihood, LinkApprox, ModuleLaplace, expected_softmax, fit_module
from .structures import Curvature, DiagonalPrecision, FullPrecision, LowRankPrecision, Structure

__all__ = [
    "Curvature",
    "DiagonalPrecision",
    "FullPrecision",
    "LaplaceApproximation",
    "Likelihood",
    "LinkApprox",
    "LowRankPrecision",
    "ModuleLaplace",
    "Predictive",
    "PredictiveMethod",
    "Repair",
    "Structure",
    "expected_softmax",
    "fit",
    "fit_module",
]


def __getattr__(name: str) -> object:
    """``ModuleStructure``, the old name of :class:`Structure` (fit and fit_module share
    one), with a DeprecationWarning."""
    if name == "ModuleStructure":
        warnings.warn(
            "probcalc.laplace.ModuleStructure is deprecated: use probcalc.laplace.Structure",
            DeprecationWarning,
            stacklevel=2,
        )
        return Structure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
