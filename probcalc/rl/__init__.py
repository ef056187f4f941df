"""Policy gradients for continuous actions on Gymnasium environments.

- :class:`REINFORCE`, :class:`A2C`, :class:`PPO`, :class:`NaturalPG`, :class:`TRPO` share
  one class hierarchy (:class:`OnPolicyAgent` -> :class:`ActorCritic` -> ...), each with a
  frozen config dataclass of its settings (:class:`PPOConfig`, ...): rollouts
  over gymnasium vector envs, normalization, the training loop with progress bar,
  CSV/TensorBoard logs, checkpoints and resume, save/load, predict.
- Building blocks: :func:`generalized_advantages` (time limits and autoreset steps done
  right), Gaussian and tanh-squashed Gaussian policies, running normalizers.
- :func:`evaluate` scores an agent; :func:`load` reads any saved agent;
  :data:`TUNED` holds per-task settings with their sources; :func:`settings` lists an
  algorithm's settings (names, types, defaults), which the agents check on construction.
"""

from .a2c import A2C
from .actor_critic import ActorCritic
from .advantages import Advantages, generalized_advantages
from .agent import OnPolicyAgent, load
from .config import (
    A2CConfig,
    ActorCriticConfig,
    AgentConfig,
    NaturalPGConfig,
    PPOConfig,
    REINFORCEConfig,
    TRPOConfig,
)
from .evaluation import evaluate
from .natural import TRPO, NaturalPG, fisher_operator, gaussian_kl
from .normalization import ObservationNormalizer, RewardNormalizer, RunningMeanStd
from .policies import GaussianPolicy, SquashedGaussianPolicy, mlp
from .ppo import PPO
from .reinforce import REINFORCE
from .rollout import Episode, Rollout
from .settings import check_settings, settings
from .tuned import TUNED, tuned, tuned_steps

ALGORITHMS = {"reinforce": REINFORCE, "a2c": A2C, "ppo": PPO, "npg": NaturalPG, "trpo": TRPO}

__all__ = [
    "A2C",
    "ALGORITHMS",
    "PPO",
    "REINFORCE",
    "TRPO",
    "TUNED",
    "A2CConfig",
    "ActorCritic",
    "ActorCriticConfig",
    "Advantages",
    "AgentConfig",
    "Episode",
    "GaussianPolicy",
    "NaturalPG",
    "NaturalPGConfig",
    "ObservationNormalizer",
    "OnPolicyAgent",
    "PPOConfig",
    "REINFORCEConfig",
    "RewardNormalizer",
    "Rollout",
    "RunningMeanStd",
    "SquashedGaussianPolicy",
    "TRPOConfig",
    "check_settings",
    "evaluate",
    "fisher_operator",
    "gaussian_kl",
    "generalized_advantages",
    "load",
    "mlp",
    "settings",
    "tuned",
    "tuned_steps",
]
