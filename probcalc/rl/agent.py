"""The agent every algorithm builds on (:class:`Agent`: Gymnasium vector environments, its
construction from a config, acting, the training loop, files) and the on-policy layer
(:class:`OnPolicyAgent`: a Gaussian policy and rollouts). On-policy algorithms define
``update(rollout)``, off-policy ones build on :mod:`~probcalc.rl.off_policy`; the pieces
live in their own modules: the settings
in :mod:`~probcalc.rl.config`, environments in :mod:`~probcalc.rl.vector`, rollouts in
:mod:`~probcalc.rl.rollout`, schedules in :mod:`~probcalc.rl.schedules`, logs in
:mod:`~probcalc.rl.training_log`, files in :mod:`~probcalc.rl.persistence`."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import gymnasium
import numpy as np
import torch
import torch.distributed as dist

from ..core import distributed
from ..core.errors import NonFiniteError
from ..core.random import Seed, check_seed, integer_seed
from . import persistence
from .config import ACTIVATIONS, AgentConfig, OnPolicyConfig, describe, parse_dtype
from .normalization import ObservationNormalizer, RewardNormalizer
from .policies import (
    GaussianPolicy,
    SquashedGaussianPolicy,
    SquashedStateDependentPolicy,
    StateDependentGaussianPolicy,
)
from .rollout import Episode, Rollout, collect_rollout
from .schedules import schedule_factor
from .settings import check_settings, fits
from .training_log import RunReport
from .vector import env_id, make_vector_env

__all__ = ["Agent", "OnPolicyAgent", "load"]

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
RECENT_EPISODES = 100  # the window of the "recent mean return", as SB3's stats_window_size

Callback = Callable[["Agent", dict[str, Any]], bool | None]


@contextlib.contextmanager
def _initialization(seed: int, dtype: torch.dtype) -> Iterator[None]:
    """Networks made in this block are initialized from ``seed``, in ``dtype``, whatever
    torch's global random state and default dtype (both restored on exit)."""
    default = torch.get_default_dtype()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(default)


class Agent(ABC):
    """What every algorithm shares: the environments, acting, the training loop and files.
    Subclasses build the networks and optimizers and define a round of training
    (:class:`OnPolicyAgent`: a rollout and an update; :class:`~probcalc.rl.OffPolicyAgent`:
    steps into a replay buffer and gradient steps).

    Gymnasium 1.x vector environments spend the step after an episode's end on the reset;
    such steps carry no transition.

    **Settings** are the fields of the algorithm's config dataclass (``PPO.Config`` is
    :class:`~probcalc.rl.config.PPOConfig`; ``PPO.settings()`` lists them with their
    defaults), given as keywords (``PPO(env, n_envs=4)``) or as a config
    (``PPO(env, config=PPOConfig(n_envs=4))``; keywords then change the config's fields).
    They are checked before anything is built: an unknown keyword or a value of the wrong
    type raises TypeError naming it, a value out of its range ValueError.

    **Threads.** Call ``torch.set_num_threads(1)`` before training small networks (such as
    the default 64x64): with torch's default of one thread per core, the threads of every
    small forward and backward pass wait on each other. The ``probcalc`` command sets one
    thread (``--threads``).

    **Data-parallel training.** Under an initialized torch.distributed process group (torchrun,
    or ``init_process_group``) with more than one process, or with ``group=`` given, every
    rank steps its own ``n_envs`` environments with its own seeds (numpy SeedSequence.spawn of
    ``seed``), and the ranks' updates are those of the union of their rollouts: each rank's
    loss is weighted by its share of the union's transitions and the gradients are summed
    with all_reduce (TRPO's policy gradient and Fisher-vector products likewise), advantages
    are standardized over the union, the normalization statistics are merged after every
    rollout, and rank 0's parameters are broadcast when learn() starts, so every rank holds
    the same parameters, bit for bit, after every update. ``num_timesteps`` and
    ``total_steps`` count the steps of all ranks. Every rank must call collect, update and
    learn alike (learn refuses ranks that differ); rank 0 alone writes logs, checkpoints and
    the progress bar; ``save`` is called on rank 0 alone (the checkpoints that learn writes,
    with every rank's environments, are gathered from every rank). The ranks hold the same
    parameters as long as they run the same arithmetic: the same CPU kind and thread count
    (a checkpoint warns if they have drifted apart).

    Args:
        env: a registered Gymnasium id or a gymnasium.Env instance, with Box observation
            and action spaces.
        config: the settings as a config of this algorithm (default: its defaults).
        seed: an int (the same agent and run, bit for bit, for the same int), a
            torch.Generator (an int seed is drawn from it) or None (a fresh seed from the
            operating system's entropy); the int used is recorded as ``config.seed``, so a
            saved agent reproduces. It seeds the networks' initialization, the action noise,
            the minibatch order and the environments.
        group: the torch.distributed group to train across, a gloo group (None: the default
            group when one is initialized with several processes; False: this process
            alone).
        **settings: fields of the config, each overriding the config's (see
            ``settings()``).

    Raises:
        TypeError: an unknown setting (the valid ones are listed, with the closest), a
            value of the wrong type (a str for a float, 2.5 for an int), a config of another
            algorithm; env is not an id or an Env, a space is not a Box, or env_kwargs that
            the environment does not take.
        ValueError: an unknown choice (policy, activation, ...), a setting out of its range
            (n_envs or n_steps < 1, learning_rate <= 0, gamma outside [0, 1], a hidden size
            < 1, a NaN or infinite float, a negative seed), an id that is not registered, or
            squash with an unbounded action space.
    """

    Config: ClassVar[type[AgentConfig]] = AgentConfig
    registry: ClassVar[dict[str, type[Agent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Agent.registry[cls.__name__] = cls

    def __init__(
        self,
        env: str | gymnasium.Env,
        *,
        config: AgentConfig | None = None,
        seed: Seed = None,
        group: distributed.Group | bool = None,
        **settings: Any,
    ) -> None:
        self.config = self._configure(config, seed, settings)
        # a seed drawn from fresh entropy (recorded in the config): each rank draws its own
        self._seed_drawn = seed is None and (config is None or config.seed is None)
        self.group = distributed.active_group(group)
        self._check_group()
        self.rank = distributed.rank(self.group)
        self.world_size = distributed.world_size(self.group)
        # each rank's own streams: the seed itself in a single process
        self._rank_seed = distributed.rank_seed(self.config.seed, self.group)
        self.dtype = self.config.dtype
        self._numpy_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        self.env, self.env_id = env, env_id(env)
        self.n_envs = self.config.n_envs
        self.envs = make_vector_env(
            env, self.n_envs, self.config.vectorization, self.config.env_kwargs
        )
        observation_shape = self.envs.single_observation_space.shape
        action_space = self.envs.single_action_space
        self.observation_shape, self.action_shape = observation_shape, action_space.shape
        # flat bounds: the policy acts in (batch, act_dim); to_environment restores the shape
        self._action_low = action_space.low.astype(np.float32).reshape(-1)
        self._action_high = action_space.high.astype(np.float32).reshape(-1)
        bounded = np.all(np.isfinite(self._action_low)) and np.all(np.isfinite(self._action_high))
        if self.rescales_actions and not bounded:
            self.envs.close()
            raise ValueError(
                f"{self._rescaling_reason()} needs an action Box with finite bounds, got low "
                f"{self._action_low.tolist()} and high {self._action_high.tolist()}"
            )
        self.generator = torch.Generator().manual_seed(self._rank_seed)
        self.networks: dict[str, torch.nn.Module] = {}
        self._build_networks(math.prod(observation_shape), math.prod(action_space.shape))
        self.obs_normalizer, self.reward_normalizer = self._make_normalizers()
        self._make_optimizers()
        self.num_timesteps = 0
        self._progress_remaining = 1.0  # of the current learn() call, for the schedules
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=RECENT_EPISODES)
        self.finished_episodes: list[Episode] = []  # those of the latest rollout
        self._reset_environments(self._rank_seed)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def _configure(
        cls, config: AgentConfig | None, seed: Seed, settings: dict[str, Any]
    ) -> AgentConfig:
        """The config: ``config`` (or the defaults) with ``settings`` and the seed, checked
        before anything is built; seed None draws a fresh seed, recorded."""
        if config is not None and type(config) is not cls.Config:
            raise TypeError(
                f"config must be a {cls.Config.__name__} for {cls.__name__}, got "
                f"{type(config).__name__}"
            )
        if "dtype" in settings and isinstance(settings["dtype"], str):
            settings["dtype"] = parse_dtype(settings["dtype"])
        settings = check_settings(cls, settings)
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
            seed = int(seed)  # a numpy integer too
        seed = check_seed(seed)
        if seed is None and config is not None:
            seed = config.seed
        settings["seed"] = integer_seed(seed)  # fresh entropy for None
        if config is None:
            return cls.Config(**settings)
        return dataclasses.replace(config, **settings)

    @classmethod
    def settings(cls) -> str:
        """The settings of this algorithm, a line each: name = default: description."""
        return describe(cls.Config)

    def _check_group(self) -> None:  # noqa: B027 (a hook: the base accepts every group)
        """Refuse a process group the algorithm cannot train across (all can, here)."""

    @property
    def rescales_actions(self) -> bool:
        """Whether the policy acts in [-1, 1], rescaled to the action Box when stepping."""
        return False

    def _rescaling_reason(self) -> str:
        """What needs finite bounds, for the message when the Box has none."""
        return type(self).__name__

    @abstractmethod
    def _build_networks(self, obs_dim: int, act_dim: int) -> None:
        """Build ``self.policy`` and the other networks into ``self.networks``, seeded by
        ``config.seed``."""

    @abstractmethod
    def _make_optimizers(self) -> None:
        """Build the optimizers (after the networks and normalizers)."""

    @abstractmethod
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer of the agent (the learning-rate schedule sets them all)."""

    @abstractmethod
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizers' state, as saved in files."""

    @abstractmethod
    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` gave (checks before it changes; KeyError,
        ValueError, TypeError or RuntimeError when it does not fit)."""

    @property
    @abstractmethod
    def round_steps(self) -> int:
        """The environment steps of one round of training (all environments, all ranks)."""

    @abstractmethod
    def train_round(self) -> dict[str, float]:
        """One round of training: act in the environments, then update; returns the
        metrics to log."""

    def _make_normalizers(self) -> tuple[ObservationNormalizer | None, RewardNormalizer | None]:
        """The running normalizers the config asks for (merged over the ranks)."""
        shared = self.group is not False
        observations = rewards = None
        if self.config.normalize_observations:
            size = math.prod(self.observation_shape)
            observations = ObservationNormalizer((size,), shared=shared)
        if getattr(self.config, "normalize_rewards", False):
            rewards = RewardNormalizer(self.n_envs, self.config.gamma, shared=shared)
        return observations, rewards

    def _reset_environments(self, seed: int | None, update_statistics: bool = True) -> None:
        obs, _ = self.envs.reset(seed=seed)
        self._check_finite(obs, np.zeros(self.n_envs), "the reset")
        if self.obs_normalizer is not None and update_statistics:
            self.obs_normalizer.update(obs.reshape(self.n_envs, -1))
        if self.reward_normalizer is not None:
            self.reward_normalizer.returns[:] = 0.0  # no episode is in progress
        self._obs = obs
        # whether each environment's last step ended an episode: the next step is a reset
        self._last_done = np.zeros(self.n_envs, dtype=bool)
        self._episode_return = np.zeros(self.n_envs)
        self._episode_length = np.zeros(self.n_envs, dtype=np.int64)

    # ------------------------------------------------------------------ acting
    def policy_input(self, obs: np.ndarray) -> torch.Tensor:
        """Observations (batch, *obs_shape) as the networks see them: flattened to (batch,
        obs_dim), normalized, in the networks' dtype.

        Raises:
            ValueError: an observation's size is not the observation space's.
        """
        obs = np.asarray(obs)
        size = math.prod(self.observation_shape)
        if obs.ndim == 0 or math.prod(obs.shape[1:]) != size:
            dims = ", ".join(map(str, self.observation_shape))
            raise ValueError(
                f"observations must be (batch, {dims}), got an array of shape {obs.shape}"
            )
        obs = obs.reshape(len(obs), size)
        if self.obs_normalizer is not None:
            return torch.from_numpy(self.obs_normalizer(obs, self._numpy_dtype))
        return torch.from_numpy(obs.astype(self._numpy_dtype, copy=False))

    def to_environment(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as the environment takes them: rescaled from (-1, 1) for a
        squashed policy, clipped to the Box."""
        if self.rescales_actions:
            actions = self._action_low + (actions + 1) * 0.5 * (
                self._action_high - self._action_low
            )
        shape = (len(actions), *self.envs.single_action_space.shape)
        return np.clip(actions, self._action_low, self._action_high).reshape(shape)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Environment actions from the policy's mean (or a draw): one observation, of the
        observation space's shape, gives one action, of the action space's shape; a batch
        (n, *obs_shape) gives (n, *action_shape).

        Args:
            obs: one observation or a batch of them (real numbers).
            deterministic: act with the policy's mean (True) or draw from the policy (with
                gSDE, a batch of n_envs observations takes the noise of the exploration
                matrices held from training, as Stable-Baselines3 does).

        Raises:
            ValueError: obs is neither one observation nor a batch of at least one (the
                message gives the observation space's shape).
            TypeError: obs holds complex numbers or no numbers, or deterministic is not a
                bool.
        """
        if not isinstance(deterministic, bool | np.bool_):
            raise TypeError(f"deterministic must be True or False, got {deterministic!r}")
        obs = np.asarray(obs)
        if obs.dtype.kind not in "biuf":
            raise TypeError(f"obs must hold real numbers, got an array of dtype {obs.dtype}")
        single = obs.shape == self.observation_shape
        if not single and (
            obs.ndim == 0 or len(obs) == 0 or obs.shape[1:] != self.observation_shape
        ):
            raise ValueError(
                f"predict takes one observation of shape {self.observation_shape} or a batch "
                f"of shape (n, {', '.join(map(str, self.observation_shape))}), got an array of "
                f"shape {obs.shape}"
            )
        with torch.no_grad():
            # a draw uses torch's global generator: predicting never moves the training
            # stream (a gSDE policy adds the noise of its held matrices to a batch of n_envs)
            inputs = self.policy_input(obs[None] if single else obs)
            action = self.policy.sample(inputs, bool(deterministic))
        actions = self.to_environment(action.numpy())
        return actions[0] if single else actions

    @staticmethod
    def _check_finite(obs: np.ndarray, reward: np.ndarray, where: str) -> None:
        if not np.all(np.isfinite(reward)) or not np.all(np.isfinite(obs)):
            raise NonFiniteError(
                f"the environment returned a non-finite reward or observation at {where}"
            )

    def _require_gloo(self) -> None:
        """Training across processes needs a gloo group (checked when training starts, so
        that loading and predicting work under any group)."""
        if self.group is not False and "gloo" not in str(dist.get_backend(self.group)):
            raise ValueError(
                f"probcalc.rl trains its networks on the CPU: it needs a gloo process group, "
                f"not {dist.get_backend(self.group)!r} (dist.init_process_group('gloo'), or "
                f"pass group=dist.new_group(backend='gloo')); group=False trains alone"
            )

    # ------------------------------------------------------------------ learning
    def _set_learning_rate(self, progress_remaining: float) -> float:
        """Apply the schedules at ``progress_remaining`` (1 at the start of the run, towards
        0 at its end); returns the learning rate."""
        self._progress_remaining = progress_remaining
        learning_rate = self.config.learning_rate * schedule_factor(
            self.config.lr_schedule, progress_remaining
        )
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
        return learning_rate

    def learn(
        self,
        total_steps: int,
        *,
        progress_bar: bool = False,
        callback: Callback | None = None,
        log_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume_from: str | Path | None = None,
        trust_pickle: bool = False,
    ) -> Agent:
        """Alternate rounds of acting and updating for total_steps environment steps.

        Args:
            total_steps: the length of this run in environment steps (all environments,
                of every rank).
            progress_bar: a tqdm bar with steps per second and the recent mean return.
            callback: called after every round with (agent, row), row the round's
                progress row (step, time, mean return, the algorithm's metrics); it stops the
                run by returning False or by raising StopIteration (None or True go on).
            log_dir: write progress.csv, episodes.csv (and TensorBoard if installed), the
                checkpoints and, at the end, model.pt here. A new run (no resume_from)
                starts the CSV files afresh; a resumed one drops their rows past the
                checkpoint (TensorBoard's event files keep theirs).
            checkpoint_every: save ``log_dir/checkpoint.pt`` every this many steps, with
                everything needed to continue: networks, optimizer, normalization, random
                states, the environments' states (sync vector envs) and the run's start.
            resume_from: a checkpoint of a stopped run of the same total_steps: training
                continues from its step, and ends where the uninterrupted run would have,
                bit for bit when the environments were saved as data (see ``save``).
            trust_pickle: with resume_from, unpickle the environments that the checkpoint
                holds pickled (those that could not be saved as data). Unpickling runs code
                from the file: a checkpoint from someone else is code once you opt in.
                Without it such environments are reset, with a warning.

        Raises:
            ValueError: total_steps < 1, checkpoint_every without log_dir, a checkpoint of a
                run of another length; across processes, ranks that enter with another
                agent or call, or a group that is not gloo.
            TypeError: total_steps or checkpoint_every is not an int, progress_bar or
                trust_pickle not a bool, callback not callable, or resume_from not a path.
            FileNotFoundError: resume_from does not exist.
            CheckpointError: resume_from cannot be read (empty, truncated, corrupted, not a
                checkpoint, another format version, another algorithm, networks that do not
                fit this agent); the agent is left as it was.
            RuntimeError: across processes, another rank failed (it raises its own error).
        """
        self._require_gloo()
        with distributed.agreed(self.group):  # an error on one rank reaches every rank
            _check_learn_arguments(
                total_steps, progress_bar, callback, log_dir, checkpoint_every, trust_pickle
            )
            run_start = self.num_timesteps
            if resume_from is not None:
                run_start = persistence.resume(self, resume_from, total_steps, trust_pickle)
        self._check_ranks_alike(total_steps, log_dir, checkpoint_every, resume_from)
        for network in self.networks.values():  # as DistributedDataParallel: start alike
            distributed.broadcast_module(network, self.group)
        rollout_steps = self.round_steps
        log_every = self._log_every()
        pending = _MetricMeans(self.metric_names())  # the rounds since the last row
        with distributed.agreed(self.group):
            report = RunReport(
                log_dir,
                self.num_timesteps if resume_from else None,
                reports=self.rank == 0,
                progress_bar=progress_bar,
                total=math.ceil(total_steps / rollout_steps) * rollout_steps,
                done=self.num_timesteps - run_start,
            )
        steps_at_start = self.num_timesteps
        try:
            while self.num_timesteps < run_start + total_steps:
                done = (self.num_timesteps - run_start) / total_steps
                learning_rate = self._set_learning_rate(1.0 - done)
                self.finished_episodes = []
                pending.add(self.train_round())
                pending.episodes += len(self.finished_episodes)
                row = report.row(
                    self.num_timesteps,
                    self.num_timesteps - steps_at_start,
                    self.recent_mean_return(),
                    pending.episodes,
                    learning_rate,
                    pending.means(),
                )
                last = self.num_timesteps >= run_start + total_steps
                progress = (
                    last
                    or log_every is None
                    or _passed_a_multiple(log_every, self.num_timesteps, rollout_steps)
                )
                with distributed.agreed(self.group):  # rank 0's files: errors reach all
                    report.write(row, self.finished_episodes, rollout_steps, progress=progress)
                if progress:
                    pending = _MetricMeans(self.metric_names())
                if _passed_a_multiple(checkpoint_every, self.num_timesteps, rollout_steps):
                    self.save(
                        Path(log_dir) / CHECKPOINT,
                        environments=True,
                        run_start=run_start,
                        run_steps=total_steps,
                    )
                if self._callback_stops(callback, row):
                    break
        finally:
            report.close()
        with distributed.agreed(self.group):
            if log_dir is not None and self.rank == 0:
                self.save(Path(log_dir) / MODEL)
        return self

    def _log_every(self) -> int | None:
        """Write a progress row every this many steps (None: every round)."""
        return None

    def metric_names(self) -> list[str]:
        """The metrics every progress row holds (NaN where no round since the row before
        reported one: before learning starts, say); the first row fixes the CSV columns."""
        return []

    def recent_mean_return(self) -> float:
        """The mean return of the last 100 finished episodes (NaN before the first)."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def _callback_stops(self, callback: Callback | None, row: dict[str, Any]) -> bool:
        """Whether ``callback`` asks to stop (returns False or raises StopIteration); across
        processes, all ranks stop together when any rank's callback asks."""
        stop = False
        with distributed.agreed(self.group):
            if callback is not None:
                try:
                    stop = callback(self, row) is False
                except StopIteration:
                    stop = True
        return distributed.any_across(stop, self.group)

    def _check_ranks_alike(
        self,
        total_steps: int,
        log_dir: str | Path | None,
        checkpoint_every: int | None,
        resume_from: str | Path | None,
    ) -> None:
        """Across processes: every rank must enter learn() with the same agent and the same
        call, or the ranks would make different collective calls and wait on each other."""
        if self.group is False:
            return
        optimizer_steps = sum(
            float(state["step"])
            for optimizer in self.optimizers()
            for state in optimizer.state.values()
            if "step" in state
        )
        # the statistics every rank agreed on (a failed rollout leaves local data pending)
        statistics = [
            None if n is None else n.stats.agreed_count
            for n in (self.obs_normalizer, self.reward_normalizer)
        ]
        settings = self.config.as_dict()
        if self._seed_drawn:  # each rank drew its own seed: the ranks' streams differ anyway
            settings["seed"] = None
        try:  # a digest: compares NaNs, arrays and objects without __eq__ by their bytes
            config = hashlib.sha256(cloudpickle.dumps(settings)).hexdigest()
        except Exception:
            config = repr(settings)
        fingerprint = (
            type(self).__qualname__,
            config,
            self.num_timesteps,
            optimizer_steps,
            statistics,
            total_steps,
            checkpoint_every,
            log_dir is None,
            resume_from is None,
        )
        prints = distributed.gather_objects(fingerprint, self.group)
        differing = [r for r, other in enumerate(prints) if other != prints[0]]
        if differing:
            raise ValueError(
                f"rank(s) {differing} enter learn() with another agent or call than rank 0 "
                "(configuration, step count, optimizer or normalizer state, total_steps, "
                "log_dir, checkpoint_every or resume_from): every rank must build the same "
                "agent, load the same files and make the same calls"
            )

    # ------------------------------------------------------------------ persistence
    def extra_state(self) -> dict[str, Any] | None:
        """What the algorithm saves beyond networks, optimizers and normalizers (tensors
        and plain data; None: nothing)."""
        return None

    def local_extra_state(self, environments: bool) -> dict[str, Any] | None:
        """What this process alone saves beyond its random state (with ``environments``:
        a checkpoint); None: nothing."""
        return None

    def extra_state_misfit(
        self, extra: dict[str, Any] | None, local: dict[str, Any] | None
    ) -> str | None:
        """Why saved extra state does not fit this agent (None: it fits); checked before
        anything changes."""
        return None

    def load_extra_state(  # noqa: B027 (a hook: nothing to restore by default)
        self, extra: dict[str, Any] | None, local: dict[str, Any] | None
    ) -> None:
        """Restore what :meth:`extra_state` and :meth:`local_extra_state` gave (``local``
        None: the file holds no part of this process)."""

    def save(
        self,
        path: str | Path,
        *,
        environments: bool = False,
        run_start: int | None = None,
        run_steps: int | None = None,
    ) -> None:
        """Write the agent to ``path``, atomically (a temporary file renamed over it):
        configuration, networks, optimizer, normalization statistics, random state and step
        count; with ``environments`` also the environments and the episodes in progress,
        for resuming. The file holds tensors and plain data only, read back without
        unpickling (see :mod:`probcalc.rl.persistence`).

        Environments are saved as data, and restored exactly, when every attribute of
        every wrapper and environment is data (numbers, strings, numpy arrays and
        Generators, containers of them) or MuJoCo's simulation state: Gymnasium's
        classic-control and MuJoCo environments, probcalc's own. Their spaces, specs and
        constructor arguments are not saved: the agent's construction makes them again.
        Other environments of sync vector envs are saved pickled, with a warning at the
        first checkpoint of each run: resuming restores them only with
        ``trust_pickle=True``. Async environments are not saved: a resume resets them.

        Across processes: without ``environments`` this process writes the file alone (call
        it on rank 0, as with DistributedDataParallel; the parameters are every rank's);
        with ``environments`` (a checkpoint) every rank must call it: every rank's random
        state and environments are gathered, and rank 0 writes the one file.

        Raises:
            OSError: the file cannot be written (the previous file at ``path`` is kept).
        """
        persistence.save(
            self, path, environments=environments, run_start=run_start, run_steps=run_steps
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: str | gymnasium.Env | None = None,
        *,
        trust_pickle: bool = False,
        **overrides: Any,
    ) -> Agent:
        """The agent saved at ``path``, ready to predict or to learn on from its step count.
        The file is read with ``torch.load(weights_only=True)``: no code from it runs.

        Args:
            path: a file written by save() or a checkpoint.
            env: the environment, when the agent was made from an unregistered instance (or
                to use another one).
            trust_pickle: unpickle the configuration entries that were saved pickled (not
                plain data, e.g. a function in env_kwargs). Unpickling runs code from the
                file: only for files you trust. Passing those entries again (e.g.
                ``env_kwargs=``) needs no trust.
            **overrides: settings to change (e.g. n_envs, vectorization).

        Raises:
            TypeError: path is not a str or os.PathLike.
            FileNotFoundError: there is no file at ``path``.
            CheckpointError: the file cannot be read: empty, truncated, corrupted, not an
                agent file, of a format version this release does not read, holding another
                algorithm than ``cls``, or configuration saved pickled (without
                trust_pickle or the entries passed again).
            ValueError: no env can be made (an unregistered instance: pass env=), or env is
                an id that is not registered.
        """
        return persistence.load(cls, path, env, trust_pickle, overrides)


class OnPolicyAgent(Agent):
    """What every on-policy algorithm shares. Subclasses define ``update(rollout)``.

    Rollouts step ``n_envs`` copies of the environment ``n_steps`` times; the actions are
    drawn from the policy unclipped and stored so, and clipped to the Box only when passed
    to the environment (a squashed policy's actions in (-1, 1) are rescaled to the Box).
    Autoreset steps are flagged ``reset_step`` in the rollout.

    Args and Raises: as :class:`Agent`; squash with an unbounded action space is a
    ValueError.
    """

    Config: ClassVar[type[OnPolicyConfig]] = OnPolicyConfig

    @property
    def n_steps(self) -> int:
        """The steps of each environment per rollout."""
        return self.config.n_steps

    @property
    def rescales_actions(self) -> bool:
        return bool(self.config.squash)

    def _rescaling_reason(self) -> str:
        return "squash=True"

    def _build_networks(self, obs_dim: int, act_dim: int) -> None:
        """The policy (subclasses add theirs after it), seeded by ``config.seed``."""
        config = self.config
        policy_class = {
            (False, False): GaussianPolicy,
            (True, False): SquashedGaussianPolicy,
            (False, True): StateDependentGaussianPolicy,
            (True, True): SquashedStateDependentPolicy,
        }[config.squash, config.use_sde]
        with _initialization(config.seed, self.dtype):
            self.policy = policy_class(
                obs_dim,
                act_dim,
                hidden=config.hidden if config.policy == "mlp" else (),
                log_std_init=config.log_std_init,
                ortho_init=config.ortho_init,
                activation=ACTIVATIONS[config.activation],
            ).to(self.dtype)
        self.policy.log_std.requires_grad_(config.learn_std)
        self.networks["policy"] = self.policy

    def _optimizer(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """Adam with eps 1e-5, as Stable-Baselines3 and CleanRL use for on-policy methods."""
        return torch.optim.Adam(parameters, lr=self.config.learning_rate, eps=1e-5, fused=True)

    def _optimized_networks(self) -> list[str]:
        """The networks the optimizer trains (all; natural-gradient methods step the policy
        themselves)."""
        return list(self.networks)

    def _make_optimizers(self) -> None:
        self.optimizer = self._optimizer(
            [
                p
                for name in self._optimized_networks()
                for p in self.networks[name].parameters()
                if p.requires_grad
            ]
        )

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    @property
    def round_steps(self) -> int:
        return self.n_steps * self.n_envs * self.world_size

    def train_round(self) -> dict[str, float]:
        return self.update(self.collect())

    def collect(self) -> Rollout:
        """One rollout of n_steps in every environment (see :class:`Rollout`). Across
        processes, each rank returns its own rollout; the normalization statistics and the
        finished episodes are then merged over the ranks, and an error on any rank raises
        on every rank.

        Raises:
            NonFiniteError: the environment returned a NaN or infinite reward or observation.
        """
        self._require_gloo()
        episodes: list[Episode] = []
        with distributed.agreed(self.group):  # every rank hears of a failure before it goes on
            rollout = collect_rollout(self, episodes)
        for normalizer in (self.obs_normalizer, self.reward_normalizer):
            if normalizer is not None:
                normalizer.stats.synchronize(self.group)
        if self.group is not False:  # every rank's episodes, in the order of their end
            per_rank = distributed.gather_objects(episodes, self.group)
            episodes = sorted((e for rank in per_rank for e in rank), key=lambda e: e.step)
        self.finished_episodes.extend(episodes)
        self.recent_returns.extend(episode[1] for episode in episodes)
        self.num_timesteps += self.n_steps * self.n_envs * self.world_size
        return rollout

    # ------------------------------------------------------------------ across processes
    def union_counts(self, count: int) -> torch.Tensor:
        """Every rank's number of transitions, (world size,) int64, in rank order (a
        collective: across processes every rank must call it, as every method that uses
        it: the algorithms' losses, surrogates and minibatch plans)."""
        return distributed.gather_rows(torch.tensor([count]), self.group)[:, 0]

    def sum_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of ``values`` over the ranks (no graph; itself in a single process)."""
        return distributed.all_sum([values], self.group)[0]

    def reduce_gradients(self, extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """Sum the ``.grad`` of the optimizer's parameters over the ranks, in one buffer,
        with ``extra`` (a few numbers to sum, returned summed) riding in the same message.
        Each rank's loss is weighted by its share of the union's transitions, so the sum is
        the gradient of the union's loss. Written here, not with DistributedDataParallel:
        the losses reach the networks through their methods and torch.func calls, which
        DDP's forward hook does not see, and these networks fit one bucket."""
        if self.group is False:
            return extra
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in parameters]
        if extra is not None:
            grads.append(extra.to(grads[0].dtype))
        summed = distributed.all_sum(grads, self.group)
        for p, g in zip(parameters, summed, strict=False):
            p.grad.copy_(g)
        return summed[-1] if extra is not None else None

    @abstractmethod
    def update(self, rollout: Rollout) -> dict[str, float]:
        """One update from a rollout; returns the metrics to log (losses, KL, ...)."""


def load(
    path: str | Path,
    env: str | gymnasium.Env | None = None,
    *,
    trust_pickle: bool = False,
    **overrides: Any,
) -> Agent:
    """Load any probcalc.rl agent from ``path`` (the algorithm is read from the file); as
    :meth:`Agent.load`."""
    return Agent.load(path, env, trust_pickle=trust_pickle, **overrides)


def _check_learn_arguments(
    total_steps: object,
    progress_bar: object,
    callback: object,
    log_dir: object,
    checkpoint_every: object,
    trust_pickle: object,
) -> None:
    """learn()'s arguments, before any work (see learn's Raises)."""
    for name, value, kind in (
        ("total_steps", total_steps, int),
        ("checkpoint_every", checkpoint_every, int | None),
    ):
        if not fits(value, kind):
            raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    for name, value in (("progress_bar", progress_bar), ("trust_pickle", trust_pickle)):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if checkpoint_every is not None and (log_dir is None or checkpoint_every < 1):
        raise ValueError("checkpoint_every needs a log_dir and a positive number of steps")


def _passed_a_multiple(every: int | None, step: int, last_steps: int) -> bool:
    """Whether the last ``last_steps`` steps, up to ``step``, passed a multiple of ``every``."""
    return bool(every) and step // every > (step - last_steps) // every


class _MetricMeans:
    """Running means of each metric over the rounds since the last progress row, and the
    episodes finished in them."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.latest: dict[str, float] = {}
        self.rounds = 0
        self.episodes = 0  # finished since the last row

    def add(self, metrics: dict[str, float]) -> None:
        self.rounds += 1
        self.latest = metrics
        for name, value in metrics.items():
            self.totals[name] = self.totals.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        means = dict.fromkeys(self.names, math.nan)
        if self.rounds == 1:
            return {**means, **self.latest}
        means.update({name: total / self.counts[name] for name, total in self.totals.items()})
        return means
