"""The off-policy layer of SAC, TD3 and DDPG: acting into a replay buffer, rounds of
gradient steps on batches drawn from it, Q critics with target networks, and the files
that carry the buffer.

A round steps every environment ``train_freq`` times (uniformly random actions in [-1, 1]
for the first ``learning_starts`` steps), stores each real transition (s, a, r, s',
terminated), a in the policy's space [-1, 1], and then, past ``learning_starts``, makes
``gradient_steps`` updates. Time-limit truncation bootstraps from s' (the true final
observation that Gymnasium 1.x returns at the truncated step) and termination does not; the
autoreset step after an episode's end carries no transition.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from torch.distributions import Distribution

from ..core import distributed
from ..core.errors import NonFiniteError
from ..core.random import Seed
from ..mc.gradients import pathwise_grad
from .agent import Agent, _initialization
from .config import ACTIVATIONS, OffPolicyConfig
from .critics import QEnsemble
from .replay import ReplayBuffer, Transitions
from .rollout import Episode, _record_episodes

__all__ = ["OffPolicyAgent"]

LOG_EVERY = 1_000  # steps between progress rows (a row per step would swamp the files)


class OffPolicyAgent(Agent):
    """What SAC, TD3 and DDPG share. Subclasses build their networks and define
    ``exploration_actions(obs)`` and ``gradient_step(batch)``.

    Off-policy agents train in one process: under a torch.distributed group of several
    processes the constructor raises ValueError; pass ``group=False`` to run one independent
    agent per process (say, one seed per rank).

    Args and Raises: as :class:`~probcalc.rl.Agent`; also ValueError for an action Box
    without finite bounds (the policy acts in [-1, 1], rescaled to the Box), a batch_size
    above buffer_size or a group of several processes.
    """

    Config: ClassVar[type[OffPolicyConfig]] = OffPolicyConfig

    def __init__(
        self,
        env: str | gymnasium.Env,
        *,
        config: OffPolicyConfig | None = None,
        seed: Seed = None,
        group: distributed.Group | bool = None,
        **settings: Any,
    ) -> None:
        super().__init__(env, config=config, seed=seed, group=group, **settings)
        obs_dim = math.prod(self.observation_shape)
        act_dim = math.prod(self.action_shape)
        self.replay_buffer = ReplayBuffer(self.config.buffer_size, obs_dim, act_dim, self.dtype)
        self.n_updates = 0  # gradient steps made (for delays and target intervals)
        self._make_exploration()

    def _make_exploration(self) -> None:
        """Set up the exploration noise's state (none by default)."""

    def _check_group(self) -> None:
        if self.group is not False:
            raise ValueError(
                f"{type(self).__name__} trains in one process; under a process group of "
                f"several processes pass group=False to train one independent agent per "
                f"process (a seed per rank, say)"
            )

    @property
    def rescales_actions(self) -> bool:
        return True

    def _rescaling_reason(self) -> str:
        return f"{type(self).__name__} acts in [-1, 1], rescaled to the action Box: it"

    @property
    def round_steps(self) -> int:
        return self.config.train_freq * self.n_envs

    def _log_every(self) -> int:
        return LOG_EVERY

    def _build_critics(self, obs_dim: int, act_dim: int) -> None:
        """The critics (seeded by ``config.seed + 1``) and their target copy, as
        ``critic`` and ``critic_target``."""
        config = self.config
        with _initialization(config.seed + 1, self.dtype):
            self.critic = QEnsemble(
                obs_dim, act_dim, config.hidden, ACTIVATIONS[config.activation], config.n_critics
            )
        self.critic_target = self.critic.target_copy()
        self.networks.update(critic=self.critic, critic_target=self.critic_target)

    def _build_actor(
        self, actor_class: type[torch.nn.Module], obs_dim: int, act_dim: int, **options: Any
    ) -> None:
        """The policy network, seeded by ``config.seed`` (``policy="linear"``: no hidden
        layers), as ``policy``; ``options`` go to ``actor_class``."""
        config = self.config
        hidden = config.hidden if config.policy == "mlp" else ()
        with _initialization(config.seed, self.dtype):
            self.policy = actor_class(
                obs_dim, act_dim, hidden, ACTIVATIONS[config.activation], **options
            )
        self.networks["policy"] = self.policy

    # ------------------------------------------------------------------ acting
    @abstractmethod
    def exploration_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """The actions (n_envs, act_dim) in [-1, 1] taken while training, at observations
        as the networks see them, drawn with ``self.generator``."""

    def reset_exploration(self, done: np.ndarray) -> None:
        """Called with the environments whose episode just ended (noise processes reset)."""

    def resample_exploration(self, step: int) -> None:
        """Called before each step of a round, ``step`` counting from 0 within the round
        (gSDE draws its matrices here)."""

    def _step_environments(self) -> None:
        """One step of every environment; the real transitions go into the buffer."""
        with torch.no_grad():
            if self.num_timesteps < self.config.learning_starts:
                shape = (self.n_envs, math.prod(self.action_shape))
                actions = torch.rand(shape, generator=self.generator, dtype=self.dtype) * 2 - 1
            else:
                actions = self.exploration_actions(self.policy_input(self._obs))
        actions = actions.numpy()
        next_obs, reward, terminated, truncated, _ = self.envs.step(self.to_environment(actions))
        self._check_finite(next_obs, reward, f"step {self.num_timesteps // self.n_envs}")
        reset_step, done = self._last_done, terminated | truncated
        episodes: list[Episode] = []
        _record_episodes(self, reward, reset_step, done, 0, episodes)
        live = ~reset_step
        if live.any():
            flat = (self.n_envs, -1)
            self.replay_buffer.add(
                Transitions(
                    obs=self._as_tensor(self._obs.reshape(flat)[live]),
                    actions=self._as_tensor(actions[live]),
                    rewards=self._as_tensor(reward[live]),
                    next_obs=self._as_tensor(next_obs.reshape(flat)[live]),
                    terminated=torch.from_numpy(terminated[live]),
                )
            )
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(next_obs.reshape(self.n_envs, -1))
        if done.any():
            self.reset_exploration(done)
        self._obs, self._last_done = next_obs, done
        self.finished_episodes.extend(episodes)
        self.recent_returns.extend(episode[1] for episode in episodes)
        self.num_timesteps += self.n_envs

    def _as_tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=self._numpy_dtype))

    # ------------------------------------------------------------------ learning
    @abstractmethod
    def gradient_step(self, batch: Transitions) -> dict[str, float]:
        """One update from a batch (observations as the networks see them); returns the
        losses. ``self.n_updates`` counts the steps made before this one."""

    def actor_step(
        self,
        objective: Callable[[torch.Tensor], torch.Tensor],
        policy: Distribution,
        seed: Seed,
    ) -> float:
        """One step of the actor's optimizer on the pathwise estimate
        ``pathwise_grad(objective, policy, 1)``: one draw per state (the point mass's own for
        a deterministic policy), ``objective`` mapping the draw (1, batch, act_dim) to
        (1,). Returns the loss.

        Raises:
            NonFiniteError: the loss is NaN or infinite, naming the gradient step.
        """
        try:
            loss = pathwise_grad(objective, policy, 1, seed=seed, group=False)
        except NonFiniteError as error:
            raise NonFiniteError(
                f"{type(self).__name__}'s actor_loss is {error.value} at gradient step "
                f"{self.n_updates + 1} (environment step {self.num_timesteps}): lower the "
                f"learning_rate, or check the rewards' scale",
                value=error.value,
                where=f"gradient step {self.n_updates + 1}",
            ) from None
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        return loss.item()

    def network_batch(self, batch: Transitions) -> Transitions:
        """A batch from the buffer with its observations normalized as the networks see
        them (with the current statistics, as Stable-Baselines3's VecNormalize does)."""
        if self.obs_normalizer is None:
            return batch
        normalize = self.obs_normalizer
        return batch._replace(
            obs=torch.from_numpy(normalize(batch.obs.numpy(), self._numpy_dtype)),
            next_obs=torch.from_numpy(normalize(batch.next_obs.numpy(), self._numpy_dtype)),
        )

    def train_round(self) -> dict[str, float]:
        """``train_freq`` steps of every environment, then (past learning_starts)
        ``gradient_steps`` updates; returns the updates' mean losses (none before)."""
        for step in range(self.config.train_freq):
            self.resample_exploration(step)
            self._step_environments()
        if self.num_timesteps <= self.config.learning_starts or len(self.replay_buffer) == 0:
            return {}
        totals: dict[str, float] = {}
        updates = self.config.updates_per_round
        for _ in range(updates):
            drawn = self.replay_buffer.sample(self.config.batch_size, self.generator)
            batch = self.network_batch(drawn)
            losses = self.gradient_step(batch)
            self.n_updates += 1
            for name, value in losses.items():
                if not math.isfinite(value):
                    raise NonFiniteError(
                        f"{type(self).__name__}'s {name} is {value} at gradient step "
                        f"{self.n_updates} (environment step {self.num_timesteps}): lower the "
                        f"learning_rate, or check the rewards' scale",
                        value=value,
                        where=f"gradient step {self.n_updates}",
                    )
                totals[name] = totals.get(name, 0.0) + value
        return {name: total / updates for name, total in totals.items()}

    # ------------------------------------------------------------------ files
    def optimizer_state(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.named_optimizers()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        named = dict(self.named_optimizers())
        if set(state) != set(named):
            raise ValueError(f"it holds the optimizers {sorted(state)}, not {sorted(named)}")
        for name, optimizer in named.items():
            optimizer.load_state_dict(state[name])

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [optimizer for _, optimizer in self.named_optimizers()]

    @abstractmethod
    def named_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        """The optimizers by name (actor, critic, ...)."""

    def extra_state(self) -> dict[str, Any]:
        return {"n_updates": self.n_updates}

    def local_extra_state(self, environments: bool) -> dict[str, Any] | None:
        """With ``environments`` (a checkpoint): the replay buffer and the exploration
        noise's state. Files written by save() alone hold neither (as Stable-Baselines3's
        save, which leaves the buffer out)."""
        if not environments:
            return None
        return {"buffer": self.replay_buffer.state_dict(), "noise": self.noise_state()}

    def noise_state(self) -> torch.Tensor | None:
        """The exploration noise's state (None: it has none)."""
        return None

    def load_noise_state(self, state: torch.Tensor | None) -> None:
        """Restore :meth:`noise_state`'s value."""

    def extra_state_misfit(
        self, extra: dict[str, Any] | None, local: dict[str, Any] | None
    ) -> str | None:
        if type(extra) is not dict or type(extra.get("n_updates")) is not int:
            return "its update count is missing or malformed"
        if local is not None:
            if type(local) is not dict:
                return "its replay buffer is malformed"
            noise, expected = local.get("noise"), self.noise_state()
            fits = (noise is None and expected is None) or (
                type(noise) is torch.Tensor
                and expected is not None
                and noise.shape == expected.shape
            )
            if not fits:
                return "its exploration noise state does not fit this agent's"
            return self.replay_buffer.misfit(local.get("buffer"))
        return None

    def load_extra_state(self, extra: dict[str, Any] | None, local: dict[str, Any] | None) -> None:
        self.n_updates = extra["n_updates"]
        if local is not None:
            self.replay_buffer.load_state_dict(local["buffer"])
            self.load_noise_state(local["noise"])
