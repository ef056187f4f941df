"""The settings of every algorithm as frozen dataclasses: one source for the constructors
(``PPO(env, n_envs=4)`` or ``PPO(env, config=PPOConfig(n_envs=4))``), the files that
``save`` writes, :func:`probcalc.rl.settings`, :data:`probcalc.rl.TUNED` and the
``probcalc`` command's ``--set``.

A config checks itself when it is made: a value of the wrong type is a TypeError, a value
out of its range a ValueError, each naming the setting, before any environment is built.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import warnings
from typing import Any, ClassVar

import numpy as np
import torch

from ..core.random import integer_seed
from .settings import check_value

__all__ = [
    "A2CConfig",
    "ActorCriticConfig",
    "AgentConfig",
    "DDPGConfig",
    "NaturalPGConfig",
    "OffPolicyConfig",
    "OnPolicyConfig",
    "PPOConfig",
    "REINFORCEConfig",
    "SACConfig",
    "TD3Config",
    "TRPOConfig",
    "field_docs",
    "parse_dtype",
]

ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
POLICIES = ("mlp", "linear")
LR_SCHEDULES = ("constant", "linear")
VECTORIZATIONS = ("sync", "async")
OPTIMIZERS = ("rmsprop", "adam")
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
MAX_SEED = 2**63 - 1  # torch's generators take seeds below 2**64; probcalc derives seed + 1
DEFAULT_BATCH_SIZE = 64  # Stable-Baselines3's PPO minibatch


def parse_dtype(value: object, *, warn: bool = True) -> torch.dtype:
    """``value`` as a torch dtype: torch.float32 or torch.float64; the strings "float32" and
    "float64" are read too (with a DeprecationWarning when ``warn``).

    Raises:
        ValueError: another dtype or string.
        TypeError: neither a torch.dtype nor a str.
    """
    if isinstance(value, str):
        if value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; valid: torch.float32, torch.float64")
        if warn:
            warnings.warn(
                f"dtype={value!r} is deprecated: use dtype=torch.{value}",
                DeprecationWarning,
                stacklevel=4,
            )
        return DTYPES[value]
    if not isinstance(value, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {value!r} ({type(value).__name__})")
    if value not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {value}")
    return value


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(repr, valid))}")


def _at_least(name: str, value: float, minimum: float) -> None:
    if not value >= minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _within(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")


def _check_sde_sample_freq(value: int) -> None:
    if value != -1:
        _at_least("sde_sample_freq (or -1)", value, 1)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


_ENTRY = re.compile(r"^    (\w+): (.*)$")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: its description} from the ``Attributes:`` sections of the docstrings of
    ``cls`` and its bases (a subclass's entry replaces its base's)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = inspect.cleandoc(vars(klass).get("__doc__") or "")
        lines = text.splitlines()
        if "Attributes:" not in lines:
            continue
        name = None
        for line in lines[lines.index("Attributes:") + 1 :]:
            if line and not line.startswith(" "):
                break  # the next section
            entry = _ENTRY.match(line)
            if entry:
                name = entry[1]
                docs[name] = entry[2].strip()
            elif name is not None and line.strip():
                docs[name] += " " + line.strip()
    return docs


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """The settings every algorithm has, on-policy and off-policy.

    Attributes:
        policy: "mlp" (hidden layers ``hidden``) or "linear" (a linear map of the
            observation to the action mean).
        hidden: the hidden layer sizes of the "mlp" policy (and of a critic).
        activation: "tanh" or "relu", between the hidden layers.
        n_envs: the number of environments stepped together (per process).
        gamma: the discount, in [0, 1].
        learning_rate: the optimizer's step size (> 0).
        lr_schedule: "constant", or "linear" (decayed to 0 over each learn() call).
        normalize_observations: running normalization of the observations (saved with the
            agent).
        vectorization: "sync" (one process) or "async" (a process per environment).
        env_kwargs: keywords for gymnasium.make when the environment is an id.
        seed: seeds the networks' initialization, the action noise, the minibatch order and
            the environments; the same seed gives the same parameters, bit for bit. A
            torch.Generator is replaced by an int drawn from it; an agent built with
            ``seed=None`` records here the fresh seed it drew.
        dtype: the networks' dtype, torch.float32 (as RL libraries) or torch.float64.
    """

    policy: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    n_envs: int = 8
    gamma: float = 0.99
    learning_rate: float = 3e-3
    lr_schedule: str = "constant"
    normalize_observations: bool = False
    vectorization: str = "sync"
    env_kwargs: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    seed: int | torch.Generator | None = None
    dtype: torch.dtype = torch.float32

    #: the algorithm a config is for, in messages
    owner: ClassVar[str] = "agent"

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if self.env_kwargs is None:
            object.__setattr__(self, "env_kwargs", {})
        if isinstance(self.seed, torch.Generator):  # an int drawn from it is recorded
            object.__setattr__(self, "seed", integer_seed(self.seed))
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = check_value(
                self.owner, field.name, getattr(self, field.name), hints[field.name]
            )
            if isinstance(value, np.generic):  # numpy scalars as Python numbers
                value = value.item()
            if isinstance(value, dict):
                value = dict(value)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """The ranges and choices (the types are checked before).

        Raises:
            ValueError: a value out of its range or an unknown choice, named.
        """
        _choice("policy", self.policy, POLICIES)
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("vectorization", self.vectorization, VECTORIZATIONS)
        _at_least("n_envs", self.n_envs, 1)
        _within("gamma", self.gamma, 0, 1)
        _positive("learning_rate", self.learning_rate)
        if self.policy == "mlp" and any(size < 1 for size in self.hidden):
            raise ValueError(f"hidden layer sizes must be at least 1, got {self.hidden}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2**63 - 1], got {self.seed}")
        parse_dtype(self.dtype)

    def replace(self, **changes: Any) -> AgentConfig:
        """A copy with ``changes`` (checked as a new config)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """{field: value} (not deep-copied)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnPolicyConfig(AgentConfig):
    """The settings every on-policy algorithm has (rollouts of n_envs x n_steps).

    Attributes:
        squash: a tanh-squashed Gaussian, rescaled to the action Box (needs finite bounds).
        ortho_init: orthogonal initialization as Stable-Baselines3's (gain sqrt 2 on hidden
            layers, 0.01 on the policy's last layer and 1 on a critic's); else torch's.
        n_steps: the steps of each environment per update (an update uses n_envs x n_steps
            transitions).
        log_std_init: the initial log standard deviation of the actions.
        learn_std: whether the log standard deviation is trained (else fixed exploration).
        normalize_rewards: running scaling of the rewards by the standard deviation of the
            discounted return under gamma (saved with the agent).
        use_sde: generalized state-dependent exploration (gSDE, as Stable-Baselines3's):
            the noise is φ(s) W, φ the policy's last hidden features and W ~ N(0, σ²) a
            (features, act_dim) matrix per environment held for sde_sample_freq steps;
            log_std_init then starts log σ.
        sde_sample_freq: the steps between two draws of W (-1: one draw per rollout).
    """

    squash: bool = False
    ortho_init: bool = True
    n_steps: int = 16
    log_std_init: float = 0.0
    learn_std: bool = True
    normalize_rewards: bool = False
    use_sde: bool = False
    sde_sample_freq: int = -1

    def check(self) -> None:
        super().check()
        _at_least("n_steps", self.n_steps, 1)
        _check_sde_sample_freq(self.sde_sample_freq)


@dataclasses.dataclass(frozen=True, kw_only=True)
class REINFORCEConfig(OnPolicyConfig):
    """The settings of :class:`probcalc.rl.REINFORCE`: those of :class:`OnPolicyConfig`
    (8 environments x 16 steps, learning rate 3e-3)."""

    owner: ClassVar[str] = "REINFORCE"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActorCriticConfig(OnPolicyConfig):
    """The settings of the algorithms with a critic V(s).

    Attributes:
        gae_lambda: the GAE parameter in [0, 1] (1: Monte Carlo returns, 0: one-step TD).
        ent_coef: the weight of the entropy bonus.
        vf_coef: the weight of the value loss (>= 0).
        max_grad_norm: the gradient norm is clipped to this (> 0; None: no clip).
        normalize_advantage: standardize the advantages (per minibatch in PPO).
    """

    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    normalize_advantage: bool = True

    def check(self) -> None:
        super().check()
        _within("gae_lambda", self.gae_lambda, 0, 1)
        _at_least("vf_coef", self.vf_coef, 0)
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm must be positive (or None: no clip), got {self.max_grad_norm}"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class A2CConfig(ActorCriticConfig):
    """The settings of :class:`probcalc.rl.A2C`; the defaults are Stable-Baselines3's.

    Attributes:
        n_steps: 5 steps per environment per update.
        learning_rate: 7e-4.
        gae_lambda: 1 (the n-step returns of the paper).
        normalize_advantage: False.
        optimizer: "rmsprop" (alpha 0.99, eps 1e-5: Stable-Baselines3's choice) or "adam".
    """

    n_steps: int = 5
    learning_rate: float = 7e-4
    gae_lambda: float = 1.0
    normalize_advantage: bool = False
    optimizer: str = "rmsprop"

    owner: ClassVar[str] = "A2C"

    def check(self) -> None:
        super().check()
        _choice("optimizer", self.optimizer, OPTIMIZERS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig(ActorCriticConfig):
    """The settings of :class:`probcalc.rl.PPO`; the defaults are Stable-Baselines3's (2048
    transitions per update: 8 environments x 256 steps).

    Attributes:
        n_steps: 256 steps per environment per update.
        learning_rate: 3e-4.
        n_epochs: the passes over each rollout (>= 1).
        batch_size: the minibatch size, from 2 to a rollout (n_envs x n_steps); None:
            Stable-Baselines3's 64, or the whole rollout when that is smaller. Across
            processes it is per rank.
        clip_range: the clip of the probability ratio (> 0).
        clip_range_vf: the value prediction is clipped to this around the rollout's values
            (> 0; None: not clipped).
        target_kl: training on a rollout stops before the step of the first minibatch whose
            approximate KL passes 1.5 target_kl (> 0; None: never).
        compile: compile each full minibatch's forward and backward pass with torch.compile
            (needs a C++ compiler). Measured on one CPU thread: 11 to 37 s of compilation
            (seconds once torch's on-disk cache holds the kernels) for updates 1.1 to 1.3
            times faster: it pays on long runs, not on short ones.
    """

    n_steps: int = 256
    learning_rate: float = 3e-4
    n_epochs: int = 10
    batch_size: int | None = None
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    target_kl: float | None = None
    compile: bool = False

    owner: ClassVar[str] = "PPO"

    def check(self) -> None:
        super().check()
        _at_least("n_epochs", self.n_epochs, 1)
        for name in ("clip_range", "clip_range_vf", "target_kl"):
            _positive(name, getattr(self, name))
        if self.batch_size is not None:
            _at_least("batch_size", self.batch_size, 2)
            rollout = self.n_envs * self.n_steps
            if self.batch_size > rollout:
                raise ValueError(
                    f"batch_size {self.batch_size} is larger than a rollout of n_envs x "
                    f"n_steps = {self.n_envs} x {self.n_steps} = {rollout} transitions (per "
                    f"process): give a batch_size of at most {rollout} ({rollout} is one "
                    f"minibatch of the whole rollout), or raise n_envs or n_steps"
                )

    @property
    def minibatch_size(self) -> int:
        """batch_size, or what None stands for: 64, or the whole rollout if smaller."""
        if self.batch_size is not None:
            return self.batch_size
        return max(2, min(DEFAULT_BATCH_SIZE, self.n_envs * self.n_steps))


@dataclasses.dataclass(frozen=True, kw_only=True)
class NaturalPGConfig(ActorCriticConfig):
    """The settings of :class:`probcalc.rl.NaturalPG`; the defaults are sb3-contrib TRPO's
    (2048 transitions per update).

    Attributes:
        n_steps: 256 steps per environment per update.
        learning_rate: 1e-3, the critic's.
        max_grad_norm: None (the critic's gradient is not clipped).
        max_kl: δ, the KL radius of a step (> 0).
        step_size: if given (> 0), the step is step_size F⁻¹g instead of the KL-normalized
            one (Kakade's natural gradient with a learning rate).
        cg_iterations: the conjugate-gradient budget (>= 1).
        cg_damping: the damping λ of the Fisher matrix (>= 0).
        critic_epochs: the passes of the critic's regression over each rollout (>= 0).
        critic_batch_size: the critic's minibatch size (>= 2).
    """

    n_steps: int = 256
    learning_rate: float = 1e-3
    max_grad_norm: float | None = None
    max_kl: float = 0.01
    step_size: float | None = None
    cg_iterations: int = 15
    cg_damping: float = 0.1
    critic_epochs: int = 10
    critic_batch_size: int = 128

    owner: ClassVar[str] = "NaturalPG"

    def check(self) -> None:
        super().check()
        _positive("max_kl", self.max_kl)
        _positive("step_size", self.step_size)
        _at_least("cg_iterations", self.cg_iterations, 1)
        _at_least("cg_damping", self.cg_damping, 0)
        _at_least("critic_epochs", self.critic_epochs, 0)
        _at_least("critic_batch_size", self.critic_batch_size, 2)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TRPOConfig(NaturalPGConfig):
    """The settings of :class:`probcalc.rl.TRPO`; the line search's defaults are
    sb3-contrib's.

    Attributes:
        backtrack_factor: the step shrinks by this factor, in (0, 1), at each try.
        backtrack_steps: the number of tries (>= 1).
    """

    backtrack_factor: float = 0.8
    backtrack_steps: int = 10

    owner: ClassVar[str] = "TRPO"

    def check(self) -> None:
        super().check()
        if not 0 < self.backtrack_factor < 1:
            raise ValueError(f"backtrack_factor must lie in (0, 1), got {self.backtrack_factor}")
        _at_least("backtrack_steps", self.backtrack_steps, 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OffPolicyConfig(AgentConfig):
    """The settings of the off-policy algorithms (a replay buffer, Q critics and their
    target networks); the defaults are Stable-Baselines3's.

    Attributes:
        hidden: (256, 256), the actor's and each critic's hidden layers.
        activation: "relu".
        n_envs: 1.
        learning_rate: 3e-4, of the actor, the critics (and SAC's temperature).
        buffer_size: the transitions the replay buffer holds (the oldest are overwritten).
        learning_starts: the steps (all environments) of uniformly random actions before
            the first update.
        batch_size: the transitions of each gradient step, at most buffer_size.
        tau: the Polyak coefficient of the target networks, in (0, 1]: target <- tau x
            online + (1 - tau) x target after each update.
        train_freq: the steps of each environment between two rounds of updates.
        gradient_steps: the gradient steps of each round (-1: one per transition collected
            in the round, train_freq x n_envs).
        n_critics: the Q networks of the ensemble (the target takes their minimum).
    """

    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    n_envs: int = 1
    learning_rate: float = 3e-4
    buffer_size: int = 1_000_000
    learning_starts: int = 100
    batch_size: int = 256
    tau: float = 0.005
    train_freq: int = 1
    gradient_steps: int = 1
    n_critics: int = 2

    def check(self) -> None:
        super().check()
        _at_least("buffer_size", self.buffer_size, 1)
        _at_least("learning_starts", self.learning_starts, 0)
        _at_least("batch_size", self.batch_size, 1)
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than buffer_size {self.buffer_size}: "
                f"a batch is drawn from the buffer's transitions; raise buffer_size or lower "
                f"batch_size"
            )
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must lie in (0, 1], got {self.tau}")
        _at_least("train_freq", self.train_freq, 1)
        if self.gradient_steps != -1:
            _at_least("gradient_steps (or -1)", self.gradient_steps, 1)
        _at_least("n_critics", self.n_critics, 1)

    @property
    def updates_per_round(self) -> int:
        """gradient_steps, or what -1 stands for: a step per transition of the round."""
        if self.gradient_steps == -1:
            return self.train_freq * self.n_envs
        return self.gradient_steps


@dataclasses.dataclass(frozen=True, kw_only=True)
class SACConfig(OffPolicyConfig):
    """The settings of :class:`probcalc.rl.SAC`; the defaults are Stable-Baselines3's.

    Attributes:
        ent_coef: the temperature α of the entropy term: "auto" (learned, starting at 1),
            "auto_X" (learned, starting at X > 0) or a fixed number >= 0.
        target_entropy: the entropy the learned α aims at: "auto" (-act_dim) or a number.
        target_update_interval: the target critics are updated every this many gradient
            steps (>= 1).
        use_sde: generalized state-dependent exploration (gSDE, as Stable-Baselines3's):
            σ(s)² = Σ_j φ_j(s)² σ_j², φ the actor's last hidden features, and the noise
            while acting is φ(s) W with W ~ N(0, σ²) held for sde_sample_freq steps.
        sde_sample_freq: the steps between two draws of W (-1: one draw per round of
            train_freq steps).
        log_std_init: the starting log σ of gSDE (unused without use_sde).
    """

    ent_coef: float | str = "auto"
    target_entropy: float | str = "auto"
    target_update_interval: int = 1
    use_sde: bool = False
    sde_sample_freq: int = -1
    log_std_init: float = -3.0

    owner: ClassVar[str] = "SAC"

    def check(self) -> None:
        super().check()
        if isinstance(self.ent_coef, str):
            if self.ent_coef != "auto" and not self.ent_coef.startswith("auto_"):
                raise ValueError(
                    f"ent_coef must be 'auto', 'auto_X' (X the starting value) or a number, "
                    f"got {self.ent_coef!r}"
                )
            self.initial_ent_coef  # noqa: B018 (checks the starting value)
        else:
            _at_least("ent_coef", self.ent_coef, 0)
        if isinstance(self.target_entropy, str) and self.target_entropy != "auto":
            raise ValueError(
                f"target_entropy must be 'auto' or a number, got {self.target_entropy!r}"
            )
        _at_least("target_update_interval", self.target_update_interval, 1)
        _check_sde_sample_freq(self.sde_sample_freq)
        if not math.isfinite(self.log_std_init):
            raise ValueError(f"log_std_init must be finite, got {self.log_std_init}")

    @property
    def learns_ent_coef(self) -> bool:
        """Whether α is learned (ent_coef "auto" or "auto_X")."""
        return isinstance(self.ent_coef, str)

    @property
    def initial_ent_coef(self) -> float:
        """α at the start: 1 for "auto", X for "auto_X", the number itself otherwise.

        Raises:
            ValueError: "auto_X" where X is not a positive number.
        """
        if not isinstance(self.ent_coef, str):
            return float(self.ent_coef)
        if self.ent_coef == "auto":
            return 1.0
        text = self.ent_coef.removeprefix("auto_")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"ent_coef 'auto_X' needs a positive number X, got {self.ent_coef!r}")
        return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class TD3Config(OffPolicyConfig):
    """The settings of :class:`probcalc.rl.TD3`; the defaults are Stable-Baselines3's but
    for the exploration noise (CleanRL's 0.1; Stable-Baselines3 has none by default).

    Attributes:
        hidden: (400, 300), Stable-Baselines3's for TD3 and DDPG.
        learning_rate: 1e-3.
        policy_delay: the actor and the targets are updated every this many critic updates.
        target_policy_noise: the standard deviation of the Gaussian noise added to the
            target actions (target policy smoothing), >= 0.
        target_noise_clip: that noise is clipped to [-clip, clip], >= 0.
        noise_type: the exploration noise, "normal" or "ornstein-uhlenbeck" (theta 0.15,
            dt 0.01, as Stable-Baselines3's), added to the actions in [-1, 1].
        noise_std: the exploration noise's standard deviation (0: none), in the units of
            the actions rescaled to [-1, 1].
    """

    hidden: tuple[int, ...] = (400, 300)
    learning_rate: float = 1e-3
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    noise_type: str = "normal"
    noise_std: float = 0.1

    owner: ClassVar[str] = "TD3"

    def check(self) -> None:
        super().check()
        _at_least("policy_delay", self.policy_delay, 1)
        for name in ("target_policy_noise", "target_noise_clip", "noise_std"):
            _at_least(name, getattr(self, name), 0)
        _choice("noise_type", self.noise_type, NOISE_TYPES)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDPGConfig(TD3Config):
    """The settings of :class:`probcalc.rl.DDPG`: TD3's without its three changes, as
    Stable-Baselines3's DDPG (one critic, no policy delay, no target policy smoothing).

    Attributes:
        policy_delay: 1.
        target_policy_noise: 0.
        n_critics: 1.
    """

    policy_delay: int = 1
    target_policy_noise: float = 0.0
    n_critics: int = 1

    owner: ClassVar[str] = "DDPG"


def describe(config_class: type[AgentConfig]) -> str:
    """A line per setting: name, default and description."""
    docs = field_docs(config_class)
    lines = []
    for field in dataclasses.fields(config_class):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        lines.append(f"{field.name} = {default!r}: {docs.get(field.name, '')}")
    return "\n".join(lines)
