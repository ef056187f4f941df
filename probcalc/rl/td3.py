"""TD3 (Fujimoto et al. 2018) and DDPG (Lillicrap et al. 2016), as Stable-Baselines3's:
DDPG is TD3 with one critic, no policy delay and no target policy smoothing.

Per gradient step, on a batch (s, a, r, s', d) from the replay buffer:

- critics: y = r + γ (1 - d) min_i Q̄_i(s', clip(μ̄(s') + clip(ε, -c, c), -1, 1)),
  ε ~ N(0, target_policy_noise²), and the loss Σ_i mean (Q_i(s, a) - y)²;
- every ``policy_delay`` steps, the actor: -mean Q_1(s, μ(s)), the deterministic policy
  gradient, which is :func:`probcalc.mc.pathwise_grad` over the point mass at μ(s)
  (:class:`probcalc.mc.PointMass`); then both targets: θ̄ <- (1 - τ) θ̄ + τ θ.

Exploration adds Gaussian (or Ornstein-Uhlenbeck) noise to μ(s) in [-1, 1], clipped there.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import numpy as np
import torch

from .config import DDPGConfig, TD3Config
from .critics import polyak_update
from .off_policy import OffPolicyAgent
from .policies import DeterministicActor
from .replay import Transitions

__all__ = ["DDPG", "TD3"]

OU_THETA, OU_DT = 0.15, 1e-2  # Stable-Baselines3's Ornstein-Uhlenbeck defaults


class TD3(OffPolicyAgent):
    """Twin delayed DDPG for Box action spaces with finite bounds. Its settings are
    :class:`~probcalc.rl.TD3Config`'s; see :class:`~probcalc.rl.OffPolicyAgent` for acting,
    the buffer and training.

    Networks: ``policy`` and ``policy_target`` (:class:`~probcalc.rl.DeterministicActor`:
    an MLP ending in tanh; with ``policy="linear"`` a = tanh(W s + b)), ``critic`` and
    ``critic_target``
    (:class:`~probcalc.rl.QEnsemble` of n_critics).

    The constructor's arguments are :class:`~probcalc.rl.Agent`'s (env, config, seed,
    group, settings as keywords).

    Raises:
        TypeError, ValueError: as :class:`~probcalc.rl.OffPolicyAgent`, and an unknown
            noise_type.
    """

    Config: ClassVar[type[TD3Config]] = TD3Config

    def _make_exploration(self) -> None:
        # the Ornstein-Uhlenbeck process of each environment (zeros for Gaussian noise)
        self._noise = torch.zeros((self.n_envs, math.prod(self.action_shape)), dtype=self.dtype)

    def _build_networks(self, obs_dim: int, act_dim: int) -> None:
        self._build_actor(DeterministicActor, obs_dim, act_dim)
        self.policy_target = copy.deepcopy(self.policy).requires_grad_(False)
        self.networks["policy_target"] = self.policy_target
        self._build_critics(obs_dim, act_dim)

    def _make_optimizers(self) -> None:
        rate = self.config.learning_rate
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=rate, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=rate, fused=True)

    def named_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        return [("actor", self.actor_optimizer), ("critic", self.critic_optimizer)]

    def metric_names(self) -> list[str]:
        return ["critic_loss", "actor_loss"]

    # ------------------------------------------------------------------ exploration
    def exploration_actions(self, obs: torch.Tensor) -> torch.Tensor:
        config = self.config
        actions = self.policy(obs)
        if config.noise_std > 0:
            draw = torch.randn(actions.shape, generator=self.generator, dtype=actions.dtype)
            if config.noise_type == "normal":
                noise = config.noise_std * draw
            else:  # x <- x + θ (0 - x) dt + σ √dt ε, as Stable-Baselines3's
                self._noise += (
                    -OU_THETA * self._noise * OU_DT + config.noise_std * math.sqrt(OU_DT) * draw
                )
                noise = self._noise
            actions = actions + noise
        return actions.clamp(-1.0, 1.0)

    def reset_exploration(self, done: np.ndarray) -> None:
        self._noise[torch.from_numpy(done)] = 0.0

    def noise_state(self) -> torch.Tensor:
        return self._noise.clone()

    def load_noise_state(self, state: torch.Tensor | None) -> None:
        self._noise.copy_(state)

    # ------------------------------------------------------------------ learning
    def bellman_targets(self, batch: Transitions) -> torch.Tensor:
        """y = r + γ (1 - d) min_i Q̄_i(s', a'), a' the target actor's smoothed action
        (noise drawn with ``self.generator``), shape (batch,)."""
        config = self.config
        with torch.no_grad():
            next_actions = self.policy_target(batch.next_obs)
            if config.target_policy_noise > 0:
                draw = torch.randn(
                    next_actions.shape, generator=self.generator, dtype=next_actions.dtype
                )
                noise = (config.target_policy_noise * draw).clamp(
                    -config.target_noise_clip, config.target_noise_clip
                )
                next_actions = next_actions + noise
            next_actions = next_actions.clamp(-1.0, 1.0)
            next_q = self.critic_target(batch.next_obs, next_actions).min(dim=0).values
            bootstrap = torch.where(batch.terminated, 0.0, next_q)  # no value past a terminal state
            return batch.rewards + config.gamma * bootstrap

    def gradient_step(self, batch: Transitions) -> dict[str, float]:
        config = self.config
        targets = self.bellman_targets(batch)
        q_values = self.critic(batch.obs, batch.actions)
        critic_loss = ((q_values - targets) ** 2).mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        losses = {"critic_loss": critic_loss.item()}
        if (self.n_updates + 1) % config.policy_delay == 0:
            # the deterministic policy gradient: the pathwise estimator at a point mass
            policy = self.policy.distribution(batch.obs, checked=True)
            fixed = self.critic.detached_layers()

            def actor_objective(actions: torch.Tensor) -> torch.Tensor:
                return -self.critic(batch.obs, actions[0], fixed, first=1)[0].mean().unsqueeze(0)

            losses["actor_loss"] = self.actor_step(actor_objective, policy, seed=0)
            polyak_update(self.critic_target, self.critic, config.tau)
            polyak_update(self.policy_target, self.policy, config.tau)
        return losses


class DDPG(TD3):
    """Deep deterministic policy gradient: :class:`TD3` with the settings of
    :class:`~probcalc.rl.DDPGConfig` (one critic, no policy delay, no target smoothing).
    """

    Config: ClassVar[type[DDPGConfig]] = DDPGConfig
