"""Monte Carlo: the second way probcalc marginalizes.

``expectation`` (plain, antithetic and randomized quasi-Monte Carlo), ``importance_sampling``
with Pareto smoothing and its k-hat diagnostic (``psis``), and the gradient estimators of
d/dφ E_q[f]: ``score_function_grad`` (on the core's score-function surrogate, shared with
probcalc.rl) and ``pathwise_grad`` (SAC's and TD3's actor losses in probcalc.rl; with
``PointMass``, the deterministic policy gradient).
"""

from .expectation import MCMethod, expectation
from .gradients import Baseline, pathwise_grad, score_function_grad
from .importance import ImportanceResult, Smoothing, importance_sampling
from .point_mass import PointMass
from .psis import psis

__all__ = [
    "Baseline",
    "ImportanceResult",
    "MCMethod",
    "PointMass",
    "Smoothing",
    "expectation",
    "importance_sampling",
    "pathwise_grad",
    "psis",
    "score_function_grad",
]
