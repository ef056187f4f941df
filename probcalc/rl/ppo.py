"""PPO: the clipped surrogate of the core on GAE advantages, with a value network."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.losses import clipped_surrogate_loss
from .advantages import generalized_advantages
from .policies import mlp
from .reinforce import OnPolicyAgent

__all__ = ["PPO"]


class PPO(OnPolicyAgent):
    """Proximal policy optimization (Schulman et al., 2017) on a Gaussian policy.

    Each rollout (n_envs x n_steps) gives GAE(λ) advantages that bootstrap at time limits
    and skip Gymnasium's autoreset steps; then ``n_epochs`` passes of minibatches of
    ``batch_size`` minimize the core's clipped surrogate (advantages normalized per
    minibatch), ``vf_coef`` times the value regression, minus ``ent_coef`` times the entropy,
    with the gradient norm clipped to ``max_grad_norm``; an epoch ends early when the
    approximate KL passes ``target_kl``.

    Args:
        env, policy, n_envs, n_steps, gamma, learning_rate, lr_schedule, log_std_init,
            learn_std, seed: as for :class:`OnPolicyAgent`.
        gae_lambda, n_epochs, batch_size, clip_range, ent_coef, vf_coef, max_grad_norm,
            target_kl: PPO's settings (defaults as Stable-Baselines3's).
    """

    def __init__(
        self,
        env: str,
        *,
        gae_lambda: float = 0.95,
        n_epochs: int = 10,
        batch_size: int = 64,
        clip_range: float = 0.2,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        **options: object,
    ) -> None:
        super().__init__(env, **options)
        self.config.update(gae_lambda=gae_lambda, n_epochs=n_epochs, batch_size=batch_size,
                           clip_range=clip_range, ent_coef=ent_coef, vf_coef=vf_coef,
                           max_grad_norm=max_grad_norm, target_kl=target_kl)  # fmt: skip
        self.gae_lambda, self.n_epochs, self.batch_size = gae_lambda, n_epochs, batch_size
        self.clip_range, self.ent_coef, self.vf_coef = clip_range, ent_coef, vf_coef
        self.max_grad_norm, self.target_kl = max_grad_norm, target_kl
        obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        # the critic is an MLP even for a linear policy: an LQR's value is quadratic
        with torch.random.fork_rng():
            torch.manual_seed(1 if self.seed is None else self.seed + 1)
            self.value = mlp([obs_dim, 64, 64, 1]).float()
        self.networks["value"] = self.value
        self._build_optimizer()

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        obs, actions = batch["obs"], batch["actions"]
        steps, envs = batch["rewards"].shape
        with torch.no_grad():
            values = self.value(obs).squeeze(-1)  # (steps, envs)
            next_value = self.value(torch.as_tensor(self._obs, dtype=torch.float32)).squeeze(-1)
            old_log_prob = self.policy.log_prob(obs, actions)
        # Gymnasium 1.x: at a truncated step the returned observation is the true final one,
        # and the agent sees it as the next step's observation: its value bootstraps
        final_values = torch.cat([values[1:], next_value[None]])
        gae = generalized_advantages(
            batch["rewards"], values, batch["terminated"], batch["truncated"], next_value,
            final_values=final_values, reset_step=batch["reset_step"], gamma=self.gamma,
            gae_lambda=self.gae_lambda,
        )  # fmt: skip
        valid = gae.valid.reshape(-1)
        flat = {
            "obs": obs.reshape(steps * envs, -1)[valid],
            "actions": actions.reshape(steps * envs, -1)[valid],
            "old_log_prob": old_log_prob.reshape(-1)[valid],
            "advantages": gae.advantages.reshape(-1)[valid],
            "returns": gae.returns.reshape(-1)[valid],
        }
        n = flat["obs"].shape[0]
        # minibatch order: reproducible, and different for every seed and every update
        generator = torch.Generator().manual_seed((self.seed or 0) * 1_000_003 + self.num_timesteps)
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        for _ in range(self.n_epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                if index.numel() < 2:
                    continue
                dist = self.policy.distribution(flat["obs"][index])
                log_prob = dist.log_prob(flat["actions"][index])
                advantages = flat["advantages"][index]
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                policy_loss = clipped_surrogate_loss(
                    log_prob, flat["old_log_prob"][index], advantages.to(log_prob.dtype),
                    clip_range=self.clip_range,
                )  # fmt: skip
                predicted = self.value(flat["obs"][index]).squeeze(-1)
                value_loss = ((predicted - flat["returns"][index].to(log_prob.dtype)) ** 2).mean()
                entropy = dist.entropy().mean()
                loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
                self.optimizer.step()
            if self.target_kl is not None:
                with torch.no_grad():
                    log_ratio = (
                        self.policy.log_prob(flat["obs"], flat["actions"]) - flat["old_log_prob"]
                    )
                    approx_kl = float(((torch.exp(log_ratio) - 1) - log_ratio).mean())
                if approx_kl > 1.5 * self.target_kl:
                    break
