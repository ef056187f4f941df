"""The gradient-and-loss core: derivatives, optimizers, losses, results and errors.

Every other module of probcalc is a thin layer over this one: Laplace's Newton solve,
newton-cg and TRPO's natural-gradient step share ``hvp_operator`` and
``conjugate_gradient``; Monte Carlo gradients and policy gradients share
``score_function_surrogate``.
"""

from .derivatives import (
    FunctionalModule,
    HessianMode,
    HessianVectorOperator,
    JacobianMode,
    finite_difference,
    functional_module,
    grad,
    hessian,
    hvp,
    hvp_operator,
    jacobian,
    value_and_grad,
)
from .errors import (
    CheckpointError,
    ConvergenceError,
    ConvergenceWarning,
    NonFiniteError,
    NotPositiveDefiniteError,
    ProbcalcError,
)
from .losses import (
    Reduction,
    bernoulli_nll,
    categorical_nll,
    clipped_surrogate_loss,
    gaussian_nll,
    poisson_nll,
    score_function_surrogate,
)
from .optim import Method, conjugate_gradient, minimize
from .options import Option
from .results import ConjugateGradientResult, Estimate, IntegrationResult, OptimizeResult

__all__ = [
    "CheckpointError",
    "ConjugateGradientResult",
    "ConvergenceError",
    "ConvergenceWarning",
    "Estimate",
    "FunctionalModule",
    "HessianMode",
    "HessianVectorOperator",
    "IntegrationResult",
    "JacobianMode",
    "Method",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "OptimizeResult",
    "Option",
    "ProbcalcError",
    "Reduction",
    "bernoulli_nll",
    "categorical_nll",
    "clipped_surrogate_loss",
    "conjugate_gradient",
    "finite_difference",
    "functional_module",
    "gaussian_nll",
    "grad",
    "hessian",
    "hvp",
    "hvp_operator",
    "jacobian",
    "minimize",
    "poisson_nll",
    "score_function_surrogate",
    "value_and_grad",
]
