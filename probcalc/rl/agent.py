"""The on-policy agent every algorithm builds on: a Gaussian policy on Gymnasium vector
environments, rollouts, normalization, the training loop (progress bar, logs, checkpoints,
resume), save/load and predict. Algorithms define ``update(batch)``."""

from __future__ import annotations

import collections
import hashlib
import math
import os
import time
import warnings
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
from .normalization import ObservationNormalizer, RewardNormalizer
from .policies import GaussianPolicy, SquashedGaussianPolicy
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
        TypeError: env is not an id or an Env, or a space is not a Box.
        ValueError: an unknown option, or squash with an unbounded action space.
    """

    registry: ClassVar[dict[str, type[OnPolicyAgent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        OnPolicyAgent.registry[cls.__name__] = cls

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
        if n_steps < 1:
            raise ValueError(f"n_steps must be at least 1, got {n_steps}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
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
        """Observations as the networks see them: flattened, normalized, in the networks'
        dtype."""
        obs = np.asarray(obs).reshape(len(obs), -1)
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
        """Environment actions for observations (batch, *obs_shape): from the policy's mean,
        or a draw."""
        with torch.no_grad():
            # a draw uses torch's global generator: predicting never moves the training stream
            action = self.policy.sample(self.policy_input(obs), deterministic)
        return self.to_environment(action.numpy())

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
                continues from its step, and ends where the uninterrupted run would have.

        Raises:
            ValueError: total_steps < 1, checkpoint_every without log_dir, a checkpoint of a
                run of another length; across processes, ranks that enter with another
                agent or call, or a group that is not gloo.
            RuntimeError: across processes, another rank failed (it raises its own error).
        """
        self._require_gloo()
        run_start = self.num_timesteps
        with distributed.agreed(self.group):  # an error on one rank reaches every rank
            if total_steps < 1:
                raise ValueError(f"total_steps must be at least 1, got {total_steps}")
            if checkpoint_every is not None and (log_dir is None or checkpoint_every < 1):
                raise ValueError("checkpoint_every needs a log_dir and a positive number of "
                                 "steps")  # fmt: skip
            if resume_from is not None:
                state = torch.load(resume_from, weights_only=False)
                if state.get("run_steps") not in (None, total_steps):
                    raise ValueError(f"{resume_from} is a checkpoint of a run of "
                                     f"{state['run_steps']} steps, not {total_steps}: pass the "
                                     f"stopped run's total_steps")  # fmt: skip
                self._load_state(state, environments=True)
                run_start = int(state["run_start"] if state.get("run_start") is not None
                                else self.num_timesteps)  # fmt: skip
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
        """Write the agent to ``path``: configuration, networks, optimizer, normalization
        statistics, random state and step count; with ``environments`` also the vector
        environment's state (sync only) and the episodes in progress, for resuming.

        Across processes: without ``environments`` this process writes the file alone (call
        it on rank 0, as with DistributedDataParallel; the parameters are every rank's);
        with ``environments`` (a checkpoint) every rank must call it: every rank's random
        state and environments are gathered, and rank 0 writes the one file.
        """
        collective = environments and self.group is not False
        parts = distributed.gather_objects(self._local_state(environments), self.group,
                                           to_first=True) if collective \
            else [self._local_state(environments)]  # fmt: skip
        if collective and self.rank != 0:
            distributed.agree(None, self.group)  # rank 0's write succeeded, or raise
            return
        if collective and len({part["parameters"] for part in parts}) > 1:
            warnings.warn(
                "the ranks' parameters differ (different CPUs or thread counts make the same "
                "update round differently): the checkpoint holds rank 0's",
                RuntimeWarning,
                stacklevel=2,
            )
        state: dict[str, Any] = {
            "algorithm": type(self).__name__,
            "config": self.config,
            "networks": {name: net.state_dict() for name, net in self.networks.items()},
            "optimizer": self.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps,
            "ranks": parts,  # what each rank alone holds: random state, environments
            "recent_returns": list(self.recent_returns),
            "obs_normalizer": None if self.obs_normalizer is None
            else self.obs_normalizer.state_dict(),
            "reward_normalizer": None if self.reward_normalizer is None
            else self.reward_normalizer.state_dict(),
            "run_start": run_start,
            "run_steps": run_steps,
        }  # fmt: skip
        path = Path(path)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        with distributed.agreed(self.group if collective else False):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(state, partial)
                os.replace(partial, path)  # a crash while writing never leaves a broken file
            except Exception:
                partial.unlink(missing_ok=True)
                raise

    def _local_state(self, environments: bool) -> dict[str, Any]:
        """What this rank alone holds: the action-noise generator, the discounted returns of
        the reward normalizer and, with ``environments``, the environments."""
        parameters = hashlib.sha256()  # to check at checkpoints that the ranks still agree
        for network in self.networks.values():
            for tensor in network.state_dict().values():
                parameters.update(tensor.detach().cpu().numpy().tobytes())
        local: dict[str, Any] = {
            "parameters": parameters.hexdigest(),
            "generator": self.generator.get_state(),
            "reward_returns": None if self.reward_normalizer is None
            else self.reward_normalizer.returns.copy(),
            "environments": None,
        }  # fmt: skip
        if environments:
            vector_env = None
            if isinstance(self.envs, gymnasium.vector.SyncVectorEnv):
                try:
                    vector_env = cloudpickle.dumps(self.envs)
                except Exception:
                    vector_env = None
            local["environments"] = {
                "vector_env": vector_env, "obs": self._obs, "last_done": self._last_done,
                "episode_return": self._episode_return, "episode_length": self._episode_length,
            }  # fmt: skip
        return local

    def _load_state(self, state: dict[str, Any], environments: bool) -> None:
        for name, weights in state["networks"].items():
            self.networks[name].load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_timesteps = int(state["num_timesteps"])
        for name in ("obs_normalizer", "reward_normalizer"):
            if state.get(name) is not None and getattr(self, name) is not None:
                getattr(self, name).load_state_dict(state[name])
        parts = state.get("ranks") or [{  # a file written before probcalc ran across processes
            "generator": state["generator"], "reward_returns": None,
            "environments": state.get("environments"),
        }]  # fmt: skip
        # this rank's own part, when the file was written by as many processes as run now
        local = parts[self.rank] if len(parts) == self.world_size else None
        if local is not None:
            self.generator.set_state(local["generator"])
            if self.reward_normalizer is not None and local["reward_returns"] is not None:
                self.reward_normalizer.load_state_dict(
                    {"stats": self.reward_normalizer.stats.state_dict(),
                     "returns": local["reward_returns"]})  # fmt: skip
        else:  # another number of processes: fresh per-rank streams, still reproducible
            self.generator.manual_seed((self._noise_seed + self.num_timesteps) % 2**63)
            if self.reward_normalizer is not None:  # rank 0's episodes are not this rank's
                self.reward_normalizer.returns[:] = 0.0
        if not environments:
            return
        self.recent_returns.clear()
        self.recent_returns.extend(
            state.get("recent_returns")
            or (state.get("environments") or {}).get("recent_returns", [])
        )
        saved = None if local is None else local["environments"]
        if saved is not None and saved["vector_env"] is not None:
            self.envs.close()
            self.envs = cloudpickle.loads(saved["vector_env"])
            self._obs, self._last_done = saved["obs"], saved["last_done"]
            self._episode_return = saved["episode_return"]
            self._episode_length = saved["episode_length"]
        else:
            why = (f"written by {len(parts)} processes, resumed by {self.world_size}"
                   if local is None else "async or unpicklable environments")  # fmt: skip
            warnings.warn(
                f"the checkpoint holds no environment state for this process ({why}): the "
                "environments are reset and the episodes in progress start over",
                UserWarning,
                stacklevel=3,
            )
            seed = None if self._env_seed is None else self._env_seed + self.num_timesteps
            self._reset_environments(seed, update_statistics=False)

    @classmethod
    def load(cls, path: str | Path, env: str | gymnasium.Env | None = None,
             **overrides: Any) -> OnPolicyAgent:  # fmt: skip
        """The agent saved at ``path``, ready to predict or to learn on from its step count.

        Args:
            path: a file written by save() or a checkpoint.
            env: the environment, when the agent was made from an unregistered instance (or
                to use another one).
            overrides: configuration entries to change (e.g. n_envs, vectorization).

        Raises:
            ValueError: the file holds another algorithm, or no env can be made.
        """
        state = torch.load(path, weights_only=False)
        algorithm = OnPolicyAgent.registry[state["algorithm"]]
        if cls is not OnPolicyAgent and not issubclass(algorithm, cls):
            raise ValueError(f"{path} holds a {state['algorithm']} agent, not a {cls.__name__}")
        config = {**state["config"], **overrides}
        if env is not None:
            config["env"] = env
        if config["env"] is None:
            raise ValueError(f"{path} was saved from an unregistered environment instance: "
                             f"pass env=")  # fmt: skip
        agent = algorithm(**config)
        agent._load_state(state, environments=False)
        return agent


def load(
    path: str | Path, env: str | gymnasium.Env | None = None, **overrides: Any
) -> OnPolicyAgent:
    """Load any probcalc.rl agent from ``path`` (the algorithm is read from the file)."""
    return OnPolicyAgent.load(path, env, **overrides)
