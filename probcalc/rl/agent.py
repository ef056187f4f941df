"""The on-policy agent every algorithm builds on: a Gaussian policy on Gymnasium vector
environments, rollouts, normalization, the training loop (progress bar, logs, checkpoints,
resume), save/load and predict. Algorithms define ``update(batch)``."""

from __future__ import annotations

import collections
import hashlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import gymnasium
import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..core import distributed
from ..core.errors import NonFiniteError
from . import persistence
from .normalization import ObservationNormalizer, RewardNormalizer
from .policies import GaussianPolicy, SquashedGaussianPolicy
from .settings import check_settings, fits
from .training_log import TrainingLog
from .vector import env_id, make_vector_env

__all__ = ["OnPolicyAgent", "load"]

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
RECENT_EPISODES = 100  # the window of the "recent mean return", as SB3's stats_window_size

Callback = Callable[["OnPolicyAgent", dict[str, Any]], bool | None]


class OnPolicyAgent(ABC):
    """What every on-policy algorithm shares. Subclasses define ``update(batch)``.

    Rollouts step ``n_envs`` copies of the environment ``n_steps`` times; the actions are
    drawn from the policy unclipped and stored so, and clipped to the Box only when passed
    to the environment (a squashed policy's actions in (-1, 1) are rescaled to the Box).
    Gymnasium 1.x vector environments spend the step after an episode's end on the reset;
    such steps are flagged ``reset_step`` and carry no transition.

    **Threads.** Call ``torch.set_num_threads(1)`` before training small networks (such as
    the default 64x64): with torch's default of one thread per core, the threads of every
    small forward and backward pass wait on each other, and PPO with its default settings
    ran 6 to 11 times slower than on one thread on a 2-core machine busy with other work.
    The ``probcalc`` command sets one thread (``--threads``).

    **Settings** are checked before anything is built: an unknown keyword or a value of the
    wrong type raises TypeError naming it (see :func:`probcalc.rl.settings`), a value out of
    its range ValueError.

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
        policy: "mlp" (hidden layers ``hidden``, tanh) or "linear".
        squash: a tanh-squashed Gaussian, rescaled to the action Box (needs finite bounds).
        hidden: the hidden layer sizes of the "mlp" policy (and of a critic).
        activation: "tanh" or "relu", between the hidden layers.
        ortho_init: orthogonal initialization as Stable-Baselines3's (gain sqrt 2 on hidden
            layers, 0.01 on the policy's last layer and 1 on a critic's); else torch's.
        n_envs, n_steps: each update uses n_envs x n_steps transitions.
        gamma: the discount.
        learning_rate: the optimizer's step size.
        lr_schedule: "constant", or "linear" (decayed to 0 over each learn() call).
        log_std_init: the initial log standard deviation of the actions.
        learn_std: whether the log standard deviation is trained (else fixed exploration).
        normalize_observations, normalize_rewards: running normalization (saved with the
            agent); the rewards are scaled by the std of the discounted return under gamma.
        vectorization: "sync" (one process) or "async" (a process per environment).
        env_kwargs: keywords for gymnasium.make when env is an id.
        seed: seeds the networks' initialization, the action noise, the minibatch order and
            the environments. The same seed gives the same parameters, bit for bit.
        dtype: the networks' dtype, "float32" (as RL libraries) or "float64".
        group: the torch.distributed group to train across, a gloo group (None: the default
            group when one is initialized with several processes; False: this process
            alone).

    Raises:
        TypeError: an unknown setting (the valid ones are listed, with the closest) or a
            value of the wrong type (a str for a float, 2.5 for an int); env is not an id or
            an Env, or a space is not a Box.
        ValueError: an unknown choice (policy, activation, ...), a setting out of its range
            (n_envs or n_steps < 1, learning_rate <= 0, gamma outside [0, 1], a hidden size
            < 1, a NaN or infinite float), or squash with an unbounded action space.
    """

    registry: ClassVar[dict[str, type[OnPolicyAgent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        OnPolicyAgent.registry[cls.__name__] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> OnPolicyAgent:
        # the keywords of the final class, before any constructor runs: names and types
        check_settings(cls, {name: value for name, value in kwargs.items() if name != "env"})
        return super().__new__(cls)

    def __init__(
        self,
        env: str | gymnasium.Env,
        *,
        policy: str = "mlp",
        squash: bool = False,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        n_envs: int = 8,
        n_steps: int = 16,
        gamma: float = 0.99,
        learning_rate: float = 3e-3,
        lr_schedule: str = "constant",
        log_std_init: float = 0.0,
        learn_std: bool = True,
        normalize_observations: bool = False,
        normalize_rewards: bool = False,
        vectorization: str = "sync",
        env_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        dtype: str = "float32",
        group: distributed.Group | bool = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: 'float32', 'float64'")
        if policy not in ("mlp", "linear"):
            raise ValueError(f"unknown policy {policy!r}; valid choices are 'mlp', 'linear'")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: 'tanh', 'relu'")
        if lr_schedule not in ("constant", "linear"):
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; valid: 'constant', 'linear'")
        for name, count in (("n_envs", n_envs), ("n_steps", n_steps)):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if policy == "mlp" and any(size < 1 for size in hidden):
            raise ValueError(f"hidden layer sizes must be at least 1, got {tuple(hidden)}")
        seed = None if seed is None else int(seed)  # a numpy integer too
        self.config: dict[str, Any] = {
            "env": env_id(env), "policy": policy, "squash": squash, "hidden": tuple(hidden),
            "activation": activation, "ortho_init": ortho_init, "n_envs": n_envs,
            "n_steps": n_steps, "gamma": gamma,
            "learning_rate": learning_rate, "lr_schedule": lr_schedule,
            "log_std_init": log_std_init, "learn_std": learn_std,
            "normalize_observations": normalize_observations,
            "normalize_rewards": normalize_rewards, "vectorization": vectorization,
            "env_kwargs": dict(env_kwargs or {}), "seed": seed, "dtype": dtype,
        }  # fmt: skip
        self.group = distributed.active_group(group)
        self.rank = distributed.rank(self.group)
        self.world_size = distributed.world_size(self.group)
        # each rank's own streams: the user's seed itself in a single process
        self._env_seed = distributed.rank_seed(seed, self.group)
        self._noise_seed = distributed.rank_seed(0 if seed is None else seed, self.group)
        self.dtype = DTYPES[dtype]
        self._numpy_dtype = np.float32 if dtype == "float32" else np.float64
        self.env = env
        self.n_envs, self.n_steps, self.gamma, self.seed = n_envs, n_steps, gamma, seed
        self.learning_rate, self.lr_schedule = learning_rate, lr_schedule
        self.envs = make_vector_env(env, n_envs, vectorization, env_kwargs)
        observation_shape = self.envs.single_observation_space.shape
        action_space = self.envs.single_action_space
        self.observation_shape, self.action_shape = observation_shape, action_space.shape
        # flat bounds: the policy acts in (batch, act_dim); to_environment restores the shape
        self._action_low = action_space.low.astype(np.float32).reshape(-1)
        self._action_high = action_space.high.astype(np.float32).reshape(-1)
        if squash and not (np.all(np.isfinite(self._action_low))
                           and np.all(np.isfinite(self._action_high))):  # fmt: skip
            raise ValueError("squash=True needs an action Box with finite bounds")
        self.squash = squash
        obs_dim, act_dim = int(np.prod(observation_shape)), int(np.prod(action_space.shape))
        self.generator = torch.Generator().manual_seed(self._noise_seed)
        policy_class = SquashedGaussianPolicy if squash else GaussianPolicy
        with torch.random.fork_rng():
            torch.manual_seed(0 if seed is None else seed)
            # float32 by default, the dtype of RL networks, whatever the default
            self.policy = policy_class(
                obs_dim, act_dim, hidden=tuple(hidden) if policy == "mlp" else (),
                log_std_init=log_std_init, ortho_init=ortho_init,
                activation=ACTIVATIONS[activation],
            ).to(self.dtype)  # fmt: skip
        self.policy.log_std.requires_grad_(learn_std)
        self.networks: dict[str, torch.nn.Module] = {"policy": self.policy}
        shared = self.group is not False
        self.obs_normalizer = ObservationNormalizer((obs_dim,), shared=shared) \
            if normalize_observations else None  # fmt: skip
        self.reward_normalizer = RewardNormalizer(n_envs, gamma, shared=shared) \
            if normalize_rewards else None  # fmt: skip
        self._build_optimizer()
        self.num_timesteps = 0
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=RECENT_EPISODES)
        # (step, return, length) of the episodes finished in the latest rollout
        self.finished_episodes: list[tuple[int, float, int]] = []
        self._reset_environments(self._env_seed)

    # ------------------------------------------------------------------ set-up
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

    def _optimizer(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """Adam with eps 1e-5, as Stable-Baselines3 and CleanRL use for on-policy methods."""
        return torch.optim.Adam(parameters, lr=self.learning_rate, eps=1e-5, fused=True)

    def _optimized_networks(self) -> list[str]:
        """The networks the optimizer trains (all; natural-gradient methods step the policy
        themselves)."""
        return list(self.networks)

    def _build_optimizer(self) -> None:
        """The optimizer over the trainable parameters of the optimized networks (call
        again after adding a network)."""
        trainable = [p for name in self._optimized_networks() if name in self.networks
                     for p in self.networks[name].parameters() if p.requires_grad]  # fmt: skip
        # empty while a subclass has yet to add its networks (the critic of NaturalPG)
        self.optimizer = self._optimizer(trainable) if trainable else None

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
            raise ValueError(f"observations must be (batch, {dims}), got an array of shape "
                             f"{obs.shape}")  # fmt: skip
        obs = obs.reshape(len(obs), size)
        if self.obs_normalizer is not None:
            return torch.from_numpy(self.obs_normalizer(obs, self._numpy_dtype))
        return torch.from_numpy(obs.astype(self._numpy_dtype, copy=False))

    def to_environment(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as the environment takes them: rescaled from (-1, 1) for a
        squashed policy, clipped to the Box."""
        if self.squash:
            actions = self._action_low + (actions + 1) * 0.5 * (
                self._action_high - self._action_low
            )
        shape = (len(actions), *self.envs.single_action_space.shape)
        return np.clip(actions, self._action_low, self._action_high).reshape(shape)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Environment actions from the policy's mean (or a draw): one observation, of the
        observation space's shape, gives one action, of the action space's shape; a batch
        (n, *obs_shape) gives (n, *action_shape).

        Raises:
            ValueError: obs is neither one observation nor a batch of them (the message
                gives the observation space's shape).
        """
        obs = np.asarray(obs)
        single = obs.shape == self.observation_shape
        if not single and (obs.ndim == 0 or obs.shape[1:] != self.observation_shape):
            raise ValueError(
                f"predict takes one observation of shape {self.observation_shape} or a batch "
                f"of shape (n, {', '.join(map(str, self.observation_shape))}), got an array of "
                f"shape {obs.shape}"
            )
        with torch.no_grad():
            # a draw uses torch's global generator: predicting never moves the training stream
            action = self.policy.sample(self.policy_input(obs[None] if single else obs),
                                        deterministic)  # fmt: skip
        actions = self.to_environment(action.numpy())
        return actions[0] if single else actions

    @staticmethod
    def _check_finite(obs: np.ndarray, reward: np.ndarray, where: str) -> None:
        if not np.all(np.isfinite(reward)) or not np.all(np.isfinite(obs)):
            raise NonFiniteError(f"the environment returned a non-finite reward or observation "
                                 f"at {where}")  # fmt: skip

    def _require_gloo(self) -> None:
        """Training across processes needs a gloo group (checked when training starts, so
        that loading and predicting work under any group)."""
        if self.group is not False and "gloo" not in str(dist.get_backend(self.group)):
            raise ValueError(
                f"probcalc.rl trains its networks on the CPU: it needs a gloo process group, "
                f"not {dist.get_backend(self.group)!r} (dist.init_process_group('gloo'), or "
                f"pass group=dist.new_group(backend='gloo')); group=False trains alone"
            )

    def collect(self) -> dict[str, torch.Tensor]:
        """One rollout of n_steps in every environment: observations (as the policy saw
        them), actions (unclipped), rewards (normalized if asked), terminated, truncated and
        reset_step flags, all (n_steps, n_envs, ...). Across processes, each rank returns its
        own rollout; the normalization statistics and the finished episodes are then merged
        over the ranks, and an error on any rank raises on every rank.

        Raises:
            NonFiniteError: the environment returned a NaN or infinite reward or observation.
        """
        self._require_gloo()
        episodes: list[tuple[int, float, int]] = []
        with distributed.agreed(self.group):  # every rank hears of a failure before it goes on
            batch = self._rollout(episodes)
        for normalizer in (self.obs_normalizer, self.reward_normalizer):
            if normalizer is not None:
                normalizer.stats.synchronize(self.group)
        if self.group is not False:  # every rank's episodes, in the order of their end
            parts = distributed.gather_objects(episodes, self.group)
            episodes = sorted((e for part in parts for e in part), key=lambda e: e[0])
        self.finished_episodes.extend(episodes)
        self.recent_returns.extend(episode[1] for episode in episodes)
        self.num_timesteps += self.n_steps * self.n_envs * self.world_size
        return batch

    def _rollout(self, episodes: list[tuple[int, float, int]]) -> dict[str, torch.Tensor]:
        observations, actions, rewards = [], [], []
        terminated, truncated, reset_step = [], [], []
        with torch.no_grad():
            for step in range(self.n_steps):
                obs_t = self.policy_input(self._obs)
                action = self.policy.sample(obs_t, generator=self.generator).numpy()
                obs, reward, term, trunc, _ = self.envs.step(self.to_environment(action))
                where = f"step {self.num_timesteps // (self.n_envs * self.world_size) + step}"
                if self.group is not False:
                    where += f" on rank {self.rank}"
                self._check_finite(obs, reward, where)
                skip, done = self._last_done, term | trunc
                self._record_episodes(reward, skip, done, step, episodes)
                if self.obs_normalizer is not None:
                    self.obs_normalizer.update(obs.reshape(self.n_envs, -1))
                if self.reward_normalizer is not None:
                    self.reward_normalizer.update(reward, done, skip)
                    reward = self.reward_normalizer(reward, self._numpy_dtype)
                observations.append(obs_t)
                actions.append(action)
                rewards.append(reward)
                terminated.append(term)
                truncated.append(trunc)
                reset_step.append(skip)
                self._obs, self._last_done = obs, done
        return {
            "obs": torch.stack(observations),
            "actions": torch.from_numpy(np.stack(actions)),
            "rewards": torch.from_numpy(np.stack(rewards).astype(self._numpy_dtype)),
            "terminated": torch.from_numpy(np.stack(terminated)),
            "truncated": torch.from_numpy(np.stack(truncated)),
            "reset_step": torch.from_numpy(np.stack(reset_step)),
        }

    def _record_episodes(self, reward: np.ndarray, skip: np.ndarray, done: np.ndarray,
                         step: int, episodes: list[tuple[int, float, int]]) -> None:  # fmt: skip
        live = ~skip
        self._episode_return[live] += reward[live]
        self._episode_length[live] += 1
        at = self.num_timesteps + (step + 1) * self.n_envs * self.world_size
        for i in np.flatnonzero(done):  # one pass per finished episode, not per sample
            episodes.append((at, float(self._episode_return[i]), int(self._episode_length[i])))
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0

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
        with ``extra`` (a few figures to sum, returned summed) riding in the same message.
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

    # ------------------------------------------------------------------ learning
    @abstractmethod
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One update from a rollout; returns the figures to log (losses, KL, ...)."""

    def _set_learning_rate(self, fraction_left: float) -> float:
        scale = fraction_left if self.lr_schedule == "linear" else 1.0
        learning_rate = self.learning_rate * scale
        for group in self.optimizer.param_groups:
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
    ) -> OnPolicyAgent:
        """Alternate rollouts and updates for total_steps environment steps.

        Args:
            total_steps: the length of this run in environment steps (all environments,
                of every rank).
            progress_bar: a tqdm bar with steps per second and the recent mean return.
            callback: called after every update with (agent, figures); returning False
                stops the run.
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
            TypeError: total_steps or checkpoint_every is not an int, or callback is not
                callable.
            FileNotFoundError: resume_from does not exist.
            CheckpointError: resume_from cannot be read (empty, truncated, corrupted, not a
                checkpoint, another format version, another algorithm, networks that do not
                fit this agent); the agent is left as it was.
            RuntimeError: across processes, another rank failed (it raises its own error).
        """
        self._require_gloo()
        run_start = self.num_timesteps
        with distributed.agreed(self.group):  # an error on one rank reaches every rank
            for name, steps, kind in (
                ("total_steps", total_steps, int),
                ("checkpoint_every", checkpoint_every, int | None),
            ):
                if not fits(steps, kind):
                    raise TypeError(f"{name} must be an int, got {steps!r} "
                                    f"({type(steps).__name__})")  # fmt: skip
            if total_steps < 1:
                raise ValueError(f"total_steps must be at least 1, got {total_steps}")
            if callback is not None and not callable(callback):
                raise TypeError(f"callback must be callable, got {type(callback).__name__}")
            if checkpoint_every is not None and (log_dir is None or checkpoint_every < 1):
                raise ValueError("checkpoint_every needs a log_dir and a positive number of "
                                 "steps")  # fmt: skip
            if resume_from is not None:
                run_start = persistence.resume(self, resume_from, total_steps, trust_pickle)
        self._check_ranks_alike(total_steps, log_dir, checkpoint_every, resume_from)
        end = run_start + total_steps
        for network in self.networks.values():  # as DistributedDataParallel: start alike
            distributed.broadcast_module(network, self.group)
        main = self.rank == 0  # rank 0 alone logs, checkpoints and draws the bar
        log = None
        with distributed.agreed(self.group):
            if log_dir is not None and main:
                log = TrainingLog(log_dir, resume_step=self.num_timesteps if resume_from else None)
        rollout = self.n_steps * self.n_envs * self.world_size
        bar = tqdm(total=math.ceil(total_steps / rollout) * rollout,
                   initial=self.num_timesteps - run_start, unit="step", unit_scale=True,
                   disable=not (progress_bar and main), dynamic_ncols=True)  # fmt: skip
        clock, steps_at_start = time.perf_counter(), self.num_timesteps
        try:
            while self.num_timesteps < end:
                lr = self._set_learning_rate(1.0 - (self.num_timesteps - run_start) / total_steps)
                self.finished_episodes = []
                figures = self.update(self.collect())
                elapsed = time.perf_counter() - clock
                mean_return = float(np.mean(self.recent_returns)) if self.recent_returns \
                    else math.nan  # fmt: skip
                row = {"step": self.num_timesteps, "time": elapsed,
                       "steps_per_second": (self.num_timesteps - steps_at_start) / elapsed,
                       "mean_return": mean_return, "episodes": len(self.finished_episodes),
                       "learning_rate": lr, **figures}  # fmt: skip
                with distributed.agreed(self.group):  # rank 0's files: errors reach all
                    if log is not None:
                        log.episodes(self.finished_episodes)
                        log.progress(row)
                    bar.update(rollout)
                    if self.recent_returns:
                        bar.set_postfix_str(f"mean return {mean_return:.4g}", refresh=False)
                previous = self.num_timesteps - rollout
                if checkpoint_every and self.num_timesteps // checkpoint_every > \
                        previous // checkpoint_every:  # fmt: skip
                    self.save(Path(log_dir) / CHECKPOINT, environments=True, run_start=run_start,
                              run_steps=total_steps)  # fmt: skip
                with distributed.agreed(self.group):
                    stop = callback is not None and callback(self, row) is False
                if distributed.any_across(stop, self.group):  # all ranks stop together
                    break
        finally:
            bar.close()
            if log is not None:
                log.close()
        with distributed.agreed(self.group):
            if log_dir is not None and main:
                self.save(Path(log_dir) / MODEL)
        return self

    def _check_ranks_alike(self, total_steps: int, log_dir: str | Path | None,
                           checkpoint_every: int | None,
                           resume_from: str | Path | None) -> None:  # fmt: skip
        """Across processes: every rank must enter learn() with the same agent and the same
        call, or the ranks would make different collective calls and wait on each other."""
        if self.group is False:
            return
        optimizer_steps = sum(float(state["step"]) for state in self.optimizer.state.values()
                              if "step" in state)  # fmt: skip
        # the statistics every rank agreed on (a failed rollout leaves local data pending)
        statistics = [None if n is None else n.stats.agreed_count
                      for n in (self.obs_normalizer, self.reward_normalizer)]  # fmt: skip
        try:  # a digest: compares NaNs, arrays and objects without __eq__ by their bytes
            config = hashlib.sha256(cloudpickle.dumps(self.config)).hexdigest()
        except Exception:
            config = repr(self.config)
        fingerprint = (type(self).__qualname__, config, self.num_timesteps, optimizer_steps,
                       statistics, total_steps, checkpoint_every, log_dir is None,
                       resume_from is None)  # fmt: skip
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
    def save(self, path: str | Path, *, environments: bool = False,
             run_start: int | None = None, run_steps: int | None = None) -> None:  # fmt: skip
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
        persistence.save(self, path, environments=environments, run_start=run_start,
                         run_steps=run_steps)  # fmt: skip

    @classmethod
    def load(cls, path: str | Path, env: str | gymnasium.Env | None = None, *,
             trust_pickle: bool = False, **overrides: Any) -> OnPolicyAgent:  # fmt: skip
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
            overrides: configuration entries to change (e.g. n_envs, vectorization).

        Raises:
            FileNotFoundError: there is no file at ``path``.
            CheckpointError: the file cannot be read: empty, truncated, corrupted, not an
                agent file, of a format version this release does not read, holding another
                algorithm than ``cls``, or configuration saved pickled (without
                trust_pickle or the entries passed again).
            ValueError: no env can be made (an unregistered instance: pass env=).
        """
        return persistence.load(cls, path, env, trust_pickle, overrides)


def load(
    path: str | Path,
    env: str | gymnasium.Env | None = None,
    *,
    trust_pickle: bool = False,
    **overrides: Any,
) -> OnPolicyAgent:
    """Load any probcalc.rl agent from ``path`` (the algorithm is read from the file); as
    :meth:`OnPolicyAgent.load`."""
    return OnPolicyAgent.load(path, env, trust_pickle=trust_pickle, **overrides)
