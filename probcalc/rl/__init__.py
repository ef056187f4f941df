"""Policy gradients for continuous actions on Gymnasium environments, in both forms.

- Score function (on-policy): :class:`REINFORCE`, :class:`A2C`, :class:`PPO`,
  :class:`NaturalPG`, :class:`TRPO` (:class:`Agent` -> :class:`OnPolicyAgent` ->
  :class:`ActorCritic` -> ...): rollouts over gymnasium vector envs.
- Pathwise (off-policy): :class:`SAC`, :class:`TD3`, :class:`DDPG` (:class:`Agent` ->
  :class:`OffPolicyAgent`): a :class:`ReplayBuffer`, Q critics as one batched
  :class:`QEnsemble` with target networks.
- Every algorithm has a frozen config dataclass of its settings (:class:`PPOConfig`,
  :class:`SACConfig`, ...), normalization, the training loop with progress bar,
  CSV/TensorBoard logs, checkpoints and resume, save/load, predict.
- Building blocks: :func:`generalized_advantages` (time limits and autoreset steps done
  right), Gaussian and tanh-squashed Gaussian policies, with generalized state-dependent
  exploration (gSDE, ``use_sde``) for every stochastic policy, running normalizers.
- :func:`evaluate` scores an agent; :func:`load` reads any saved agent;
  :data:`TUNED` holds per-task settings with their sources; :func:`settings` lists an
  algorithm's settings (names, types, defaults), which the agents check on construction.
"""

from .a2c import A2C
from .actor_critic import ActorCritic
from .advantages import Advantages, generalized_advantages
from .agent import Agent, OnPolicyAgent, load
from .config import (
    A2CConfig,
    ActorCriticConfig,
    AgentConfig,
    DDPGConfig,
    NaturalPGConfig,
    OffPolicyConfig,
    OnPolicyConfig,
    PPOConfig,
    REINFORCEConfig,
    SACConfig,
    TD3Config,
    TRPOConfig,
)
from .critics import QEnsemble
from .evaluation import evaluate
from .natural import TRPO, NaturalPG, fisher_operator, gaussian_kl
from .normalization import ObservationNormalizer, RewardNormalizer, RunningMeanStd
from .off_policy import OffPolicyAgent
from .policies import (
    DeterministicActor,
    GaussianPolicy,
    SquashedGaussianPolicy,
    SquashedStateDependentPolicy,
    StateDependentGaussianPolicy,
    TanhGaussianActor,
    mlp,
)
from .ppo import PPO
from .reinforce import REINFORCE
from .replay import ReplayBuffer, Transitions
from .rollout import Episode, Rollout
from .sac import SAC
from .settings import check_settings, settings
from .td3 import DDPG, TD3
from .tuned import TASKS, TUNED, tuned, tuned_steps

ALGORITHMS = {
    "reinforce": REINFORCE,
    "a2c": A2C,
    "ppo": PPO,
    "npg": NaturalPG,
    "trpo": TRPO,
    "sac": SAC,
    "td3": TD3,
    "ddpg": DDPG,
}

__all__ = [
    "A2C",
    "ALGORITHMS",
    "DDPG",
    "PPO",
    "REINFORCE",
    "SAC",
    "TASKS",
    "TD3",
    "TRPO",
    "TUNED",
    "A2CConfig",
    "ActorCritic",
    "ActorCriticConfig",
    "Advantages",
    "Agent",
    "AgentConfig",
    "DDPGConfig",
    "DeterministicActor",
    "Episode",
    "GaussianPolicy",
    "NaturalPG",
    "NaturalPGConfig",
    "ObservationNormalizer",
    "OffPolicyAgent",
    "OffPolicyConfig",
    "OnPolicyAgent",
    "OnPolicyConfig",
    "PPOConfig",
    "QEnsemble",
    "REINFORCEConfig",
    "ReplayBuffer",
    "RewardNormalizer",
    "Rollout",
    "RunningMeanStd",
    "SACConfig",
    "SquashedGaussianPolicy",
    "SquashedStateDependentPolicy",
    "StateDependentGaussianPolicy",
    "TD3Config",
    "TRPOConfig",
    "TanhGaussianActor",
    "Transitions",
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
