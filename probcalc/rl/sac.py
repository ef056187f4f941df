"""Soft actor-critic (Haarnoja et al. 2018, with the learned temperature of the 2019
version), as Stable-Baselines3's and CleanRL's.

Per gradient step, on a batch (s, a, r, s', d) from the replay buffer:

- critics: y = r + γ (1 - d) (min_i Q̄_i(s', a') - α log π(a' | s')), a' ~ π(· | s'), and
  the loss ½ Σ_i mean (Q_i(s, a) - y)²;
- actor: E[α log π(a | s) - min_i Q_i(s, a)] with a = tanh(μ + σ ε), the pathwise estimator
  of :func:`probcalc.mc.pathwise_grad` over π's reparameterized draw (the critics fixed);
- temperature: -log α (log π(a | s) + target entropy), with "auto";
- targets: Q̄ <- (1 - τ) Q̄ + τ Q every ``target_update_interval`` steps.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..core.random import seeded
from .config import SACConfig
from .critics import polyak_update
from .off_policy import OffPolicyAgent
from .policies import TanhGaussianActor
from .replay import Transitions
from .sde import draws_at

__all__ = ["SAC"]


class Temperature(nn.Module):
    """log α, SAC's entropy temperature, as a module (saved with the networks)."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)))


class SAC(OffPolicyAgent):
    """Soft actor-critic for Box action spaces with finite bounds. Its settings are
    :class:`~probcalc.rl.SACConfig`'s (Stable-Baselines3's defaults); see
    :class:`~probcalc.rl.OffPolicyAgent` for acting, the buffer and training.

    Networks: ``policy`` (:class:`~probcalc.rl.TanhGaussianActor`; with ``use_sde``, its
    gSDE form, the exploration matrices redrawn at the start of each round and every
    ``sde_sample_freq`` steps of it), ``critic`` and
    ``critic_target`` (:class:`~probcalc.rl.QEnsemble` of n_critics), ``temperature``
    (log α, trained when ent_coef is "auto"). An ent_coef of 0 gives TD3-like updates of
    a stochastic policy without the entropy term.

    The constructor's arguments are :class:`~probcalc.rl.Agent`'s (env, config, seed,
    group, settings as keywords).

    Raises:
        TypeError: as :class:`~probcalc.rl.Agent` (an unknown setting, a Discrete action
            space).
        ValueError: as :class:`~probcalc.rl.OffPolicyAgent`, and an unknown ent_coef or
            target_entropy string.
    """

    Config: ClassVar[type[SACConfig]] = SACConfig

    def _build_networks(self, obs_dim: int, act_dim: int) -> None:
        config = self.config
        self._build_actor(
            TanhGaussianActor,
            obs_dim,
            act_dim,
            use_sde=config.use_sde,
            log_std_init=config.log_std_init,
        )
        self._build_critics(obs_dim, act_dim)
        # α starts at ent_coef ("auto": 1, "auto_X": X); a fixed α is read from the config
        self.temperature = Temperature(config.initial_ent_coef if config.learns_ent_coef else 1.0)
        self.temperature.to(self.dtype)
        self.temperature.requires_grad_(config.learns_ent_coef)
        self.networks["temperature"] = self.temperature
        if isinstance(config.target_entropy, str):  # "auto"
            self.target_entropy = -float(act_dim)
        else:
            self.target_entropy = float(config.target_entropy)

    def _make_optimizers(self) -> None:
        rate = self.config.learning_rate
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=rate, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=rate, fused=True)
        self.temperature_optimizer = None
        if self.config.learns_ent_coef:
            self.temperature_optimizer = torch.optim.Adam(
                self.temperature.parameters(), lr=rate, fused=True
            )

    def named_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        named = [("actor", self.actor_optimizer), ("critic", self.critic_optimizer)]
        if self.temperature_optimizer is not None:
            named.append(("temperature", self.temperature_optimizer))
        return named

    def metric_names(self) -> list[str]:
        learned = ["ent_coef_loss"] if self.config.learns_ent_coef else []
        return ["critic_loss", "actor_loss", *learned, "ent_coef"]

    @property
    def ent_coef(self) -> float:
        """The current temperature α."""
        if self.config.learns_ent_coef:
            return self.temperature.log_alpha.detach().exp().item()
        return float(self.config.ent_coef)

    def exploration_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.sample(obs, generator=self.generator)

    def resample_exploration(self, step: int) -> None:
        """gSDE: fresh matrices at the start of a round and every sde_sample_freq steps of
        it, as Stable-Baselines3's SAC."""
        if self.config.use_sde and draws_at(step, self.config.sde_sample_freq):
            self.policy.reset_noise(self.n_envs, self.generator)

    def bellman_targets(self, batch: Transitions, alpha: float | torch.Tensor) -> torch.Tensor:
        """y = r + γ (1 - d) (min_i Q̄_i(s', a') - α log π(a' | s')), a' drawn from π with
        ``self.generator``, shape (batch,)."""
        with torch.no_grad():
            next_policy = self.policy.distribution(batch.next_obs, checked=True)
            with seeded(self.generator):
                next_actions = next_policy.rsample()
            next_log_prob = next_policy.log_prob(next_actions)
            next_q = self.critic_target(batch.next_obs, next_actions).min(dim=0).values
            soft = next_q - alpha * next_log_prob
            bootstrap = torch.where(batch.terminated, 0.0, soft)  # no value past a terminal state
            return batch.rewards + self.config.gamma * bootstrap

    def gradient_step(self, batch: Transitions) -> dict[str, float]:
        config = self.config
        log_alpha = self.temperature.log_alpha
        alpha = log_alpha.detach().exp() if config.learns_ent_coef else config.ent_coef
        targets = self.bellman_targets(batch, alpha)
        q_values = self.critic(batch.obs, batch.actions)
        critic_loss = 0.5 * ((q_values - targets) ** 2).mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # the actor's loss: the pathwise estimator over one draw per state, critics fixed
        policy = self.policy.distribution(batch.obs, checked=True)
        fixed = self.critic.detached_layers()
        drawn: dict[str, torch.Tensor] = {}

        def actor_objective(actions: torch.Tensor) -> torch.Tensor:
            log_prob = policy.log_prob(actions)  # the cached pre-tanh draw: no atanh
            q_min = self.critic(batch.obs, actions[0], fixed).min(dim=0).values
            drawn["log_prob"] = log_prob[0]
            return (alpha * log_prob[0] - q_min).mean().unsqueeze(0)

        actor_loss = self.actor_step(actor_objective, policy, seed=self.generator)

        losses = {"critic_loss": critic_loss.item(), "actor_loss": actor_loss}
        if self.temperature_optimizer is not None:
            entropy_gap = drawn["log_prob"].detach() + self.target_entropy
            temperature_loss = -(log_alpha * entropy_gap).mean()
            self.temperature_optimizer.zero_grad(set_to_none=True)
            temperature_loss.backward()
            self.temperature_optimizer.step()
            losses["ent_coef_loss"] = temperature_loss.item()
        losses["ent_coef"] = float(alpha)
        if (self.n_updates + 1) % config.target_update_interval == 0:
            polyak_update(self.critic_target, self.critic, config.tau)
        return losses
