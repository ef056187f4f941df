"""probcalc: calculus for probabilistic machine learning, on PyTorch autograd.

Derivatives that drive optimization (gradients, Hessians, Hessian-vector products),
integrals that marginalize, and policy gradients for continuous control, all on one
gradient-and-loss core (:mod:`probcalc.core`).

>>> import torch, probcalc as pc
>>> pc.grad(lambda x: (x ** 2).sum())(torch.tensor([1.0, -2.0]))
tensor([ 2., -4.])
"""

from . import core, envs, integrate, laplace, mc, mcmc, rl, vi
from .core import (
    CheckpointError,
    ConjugateGradientResult,
    ConvergenceError,
    ConvergenceWarning,
    NonFiniteError,
    NotPositiveDefiniteError,
    OptimizeResult,
    ProbcalcError,
    conjugate_gradient,
    finite_difference,
    functional_module,
    grad,
    hessian,
    hvp,
    hvp_operator,
    jacobian,
    minimize,
    value_and_grad,
)
from .marginal import Evidence, NestedLaplaceResult, evidence, nested_laplace

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConjugateGradientResult",
    "ConvergenceError",
    "ConvergenceWarning",
    "Evidence",
    "NestedLaplaceResult",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "OptimizeResult",
    "ProbcalcError",
    "__version__",
    "conjugate_gradient",
    "core",
    "envs",
    "evidence",
    "finite_difference",
    "functional_module",
    "grad",
    "hessian",
    "hvp",
    "hvp_operator",
    "integrate",
    "jacobian",
    "laplace",
    "mc",
    "mcmc",
    "minimize",
    "nested_laplace",
    "rl",
    "value_and_grad",
    "vi",
]
