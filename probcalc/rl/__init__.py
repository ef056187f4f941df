"""Policy gradients for continuous actions (in progress): the building blocks so far are
generalized advantage estimation that handles time limits and Gymnasium's autoreset steps,
Gaussian policies (plain and tanh-squashed) for Box action spaces, and REINFORCE on the
core's score-function surrogate."""

from .advantages import Advantages, generalized_advantages
from .policies import GaussianPolicy, SquashedGaussianPolicy, mlp
from .ppo import PPO
from .reinforce import REINFORCE, OnPolicyAgent, evaluate

__all__ = [
           "PPO",
           "REINFORCE",
           "Advantages",
           "GaussianPolicy",
           "OnPolicyAgent",
           "SquashedGaussianPolicy",
           "evaluate",
           "generalized_advantages",
           "mlp",
]  # fmt: skip
