"""Policy gradients for continuous actions (in progress): the building blocks so far are
generalized advantage estimation that handles time limits and Gymnasium's autoreset steps,
and Gaussian policies (plain and tanh-squashed) for Box action spaces."""

from .advantages import Advantages, generalized_advantages
from .policies import GaussianPolicy, SquashedGaussianPolicy, mlp

__all__ = ["Advantages", "GaussianPolicy", "SquashedGaussianPolicy", "generalized_advantages",
           "mlp"]  # fmt: skip
