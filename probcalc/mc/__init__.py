"""Monte Carlo: the second way probcalc marginalizes.

``expectation`` (plain, antithetic and randomized quasi-Monte Carlo), ``importance_sampling``
with Pareto smoothing and its k-hat diagnostic (``psis``), and the gradient estimators of
d/dφ E_q[f]: ``score_function_grad`` (on the core's score-function surrogate, shared with
probcalc.rl) and ``pathwise_grad``.
"""

from .expectation import MCMethod, expectation
from .gradients import Baseline, pathwise_grad, score_function_grad
from .importance import ImportanceResult, Smoothing, importance_sampling
from .psis import psis

__all__ = [
    "Baseline",
    "ImportanceResult",
    "MCMethod",
    "Smoothing",
    "expectation",
    "importance_sampling",
    "pathwise_grad",
    "psis",
    "score_function_grad",
]
