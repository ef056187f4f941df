"""REINFORCE: the score-function estimator of probcalc.mc applied to a policy.

The gradient of the expected return is estimated by the core's
``score_function_surrogate(log π(a_t | s_t), G_t - b_t)``, G_t the discounted return-to-go
within the rollout and b_t the mean of the other returns in the batch (a leave-one-out
baseline, unbiased), the same surrogate probcalc.mc.score_function_grad uses.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import gymnasium
import numpy as np
import torch

from ..core.errors import NonFiniteError
from ..core.losses import score_function_surrogate
from .advantages import generalized_advantages
from .policies import GaussianPolicy

__all__ = ["REINFORCE", "OnPolicyAgent", "evaluate"]


def _vector_env(env: str, n_envs: int, seed: int | None) -> gymnasium.vector.VectorEnv:
    if not isinstance(env, str):
        raise TypeError(f"env must be a registered Gymnasium id (a str), got {type(env).__name__}")
    if gymnasium.spec(env).max_episode_steps is None:
        warnings.warn(
            f"{env} has no time limit (max_episode_steps): an episode that never terminates "
            f"is never cut, and its returns are taken only within each rollout",
            UserWarning,
            stacklevel=3,
        )
    envs = gymnasium.make_vec(env, num_envs=n_envs, vectorization_mode="sync")
    if not isinstance(envs.single_action_space, gymnasium.spaces.Box):
        raise TypeError(
            f"{env} has a {type(envs.single_action_space).__name__} action space; the policy "
            f"gradients of probcalc.rl need a Box (continuous actions)"
        )
    return envs


class OnPolicyAgent(ABC):
    """What every on-policy algorithm shares: a Gaussian policy on Gymnasium vector
    environments, rollouts that mask the autoreset steps and check for non-finite values,
    the learning loop with its learning-rate schedule, save/load, predict. Subclasses
    define ``update(batch)`` (and may add networks to ``self.networks``).

    Args:
        env: a registered Gymnasium id with a Box action space.
        policy: "mlp" (hidden layers of 64) or "linear".
        n_envs, n_steps: each update uses n_envs x n_steps transitions.
        gamma: the discount of the returns-to-go.
        learning_rate: Adam's step size.
        lr_schedule: "constant", or "linear" (decayed to 0 over each learn() call: the
            stochastic-approximation schedule under which the iterates settle).
        log_std_init: the initial log standard deviation of the actions.
        learn_std: whether the log standard deviation is trained (else fixed exploration).
        seed: seeds the policy's initialization, the sampling and the environments.

    Raises:
        TypeError: env is not an id, or its action space is not a Box.
    """

    def __init__(
        self,
        env: str,
        *,
        policy: str = "mlp",
        n_envs: int = 8,
        n_steps: int = 16,
        gamma: float = 0.99,
        learning_rate: float = 3e-3,
        lr_schedule: str = "constant",
        log_std_init: float = 0.0,
        learn_std: bool = True,
        seed: int | None = None,
    ) -> None:
        if policy not in ("mlp", "linear"):
            raise ValueError(f"unknown policy {policy!r}; valid choices are 'mlp', 'linear'")
        if lr_schedule not in ("constant", "linear"):
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; valid: 'constant', 'linear'")
        self.lr_schedule = lr_schedule
        self.config = {
            "env": env,
            "policy": policy,
            "n_envs": n_envs,
            "n_steps": n_steps,
            "gamma": gamma,
            "learning_rate": learning_rate,
            "lr_schedule": lr_schedule,
            "log_std_init": log_std_init,
            "learn_std": learn_std,
            "seed": seed,
        }
        self.env_id, self.n_envs, self.n_steps, self.gamma = env, n_envs, n_steps, gamma
        self.seed = seed
        self.envs = _vector_env(env, n_envs, seed)
        obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        act_dim = int(np.prod(self.envs.single_action_space.shape))
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)
        with torch.random.fork_rng():
            torch.manual_seed(0 if seed is None else seed)
            # float32: the dtype of RL networks (DESIGN.md), whatever the default dtype
            self.policy = GaussianPolicy(obs_dim, act_dim, hidden=(64, 64) if policy == "mlp"
                                         else (), log_std_init=log_std_init).float()  # fmt: skip
        self.policy.log_std.requires_grad_(learn_std)
        self.networks: dict[str, torch.nn.Module] = {"policy": self.policy}
        self.learning_rate = learning_rate
        self._build_optimizer()
        self.num_timesteps = 0
        self._obs, _ = self.envs.reset(seed=seed)
        # whether each environment's last step ended an episode: Gymnasium 1.x vector envs
        # then spend the next step on the reset, which is no transition
        self._last_done = torch.zeros(n_envs, dtype=torch.bool)

    def _build_optimizer(self) -> None:
        """Adam over every trainable parameter of ``self.networks`` (call again after adding
        a network)."""
        trainable = [p for net in self.networks.values() for p in net.parameters()
                     if p.requires_grad]  # fmt: skip
        self.optimizer = torch.optim.Adam(trainable, lr=self.learning_rate)

    @abstractmethod
    def update(self, batch: dict[str, torch.Tensor]) -> None:
        """One update from a rollout: defined by each algorithm."""

    def _sample(self, obs: torch.Tensor) -> torch.Tensor:
        dist = self.policy.distribution(obs)
        noise = torch.randn(dist.mean.shape, generator=self.generator, dtype=dist.mean.dtype)
        return (dist.mean + dist.stddev * noise).detach()

    def collect(self) -> dict[str, torch.Tensor]:
        """One rollout of n_steps in every environment: observations, actions (unclipped:
        the environment clips them), rewards, done flags."""
        observations, actions, rewards, terminated, truncated = [], [], [], [], []
        obs = self._obs
        for step in range(self.n_steps):
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            action = self._sample(obs_t)
            obs, reward, term, trunc, _ = self.envs.step(action.numpy())
            if not np.all(np.isfinite(reward)) or not np.all(np.isfinite(obs)):
                at = self.num_timesteps + step
                raise NonFiniteError(
                    f"the environment returned a non-finite reward or observation at step {at}"
                )
            observations.append(obs_t)
            actions.append(action)
            rewards.append(torch.as_tensor(reward, dtype=torch.float32))
            terminated.append(torch.as_tensor(term))
            truncated.append(torch.as_tensor(trunc))
        self._obs = obs
        self.num_timesteps += self.n_steps * self.n_envs
        terminated_t, truncated_t = torch.stack(terminated), torch.stack(truncated)
        reset_step = torch.zeros_like(terminated_t)
        reset_step[0] = self._last_done
        reset_step[1:] = terminated_t[:-1] | truncated_t[:-1]
        self._last_done = terminated_t[-1] | truncated_t[-1]
        return {"obs": torch.stack(observations), "actions": torch.stack(actions),
                "rewards": torch.stack(rewards), "terminated": terminated_t,
                "truncated": truncated_t, "reset_step": reset_step}  # fmt: skip

    def learn(self, total_steps: int) -> OnPolicyAgent:
        """Alternate rollouts and updates until total_steps transitions."""
        updates = math.ceil(total_steps / (self.n_steps * self.n_envs))
        decay = self.lr_schedule == "linear"
        schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: 1.0 - k / updates if decay else 1.0
        )
        for _ in range(updates):
            self.update(self.collect())
            schedule.step()
        return self

    def save(self, path: str | Path) -> None:
        """Write the configuration, the policy, the optimizer and the step count to ``path``."""
        networks = {name: net.state_dict() for name, net in self.networks.items()}
        torch.save({"config": self.config, "networks": networks,
                    "optimizer": self.optimizer.state_dict(),
                    "num_timesteps": self.num_timesteps}, path)  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> OnPolicyAgent:
        """The agent saved at ``path``, ready to predict or to learn on from its step count."""
        state = torch.load(path, weights_only=False)
        agent = cls(**state["config"])
        for name, weights in state["networks"].items():
            agent.networks[name].load_state_dict(weights)
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.num_timesteps = int(state["num_timesteps"])
        return agent

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for observations (batch, obs_dim): the mean, or a draw."""
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            if deterministic:
                return self.policy.distribution(obs_t).mean.numpy()
            return self._sample(obs_t).numpy()


class REINFORCE(OnPolicyAgent):
    """Monte Carlo policy gradient with a leave-one-out baseline on a Gaussian policy.
    Arguments as for :class:`OnPolicyAgent`."""

    def surrogate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The score-function surrogate whose gradient estimates ∇ E[return]; its negation
        is the loss. Returns-to-go are cut at the rollout's end (no bootstrap: REINFORCE
        has no critic) and at episode ends; autoreset steps are left out."""
        rewards = batch["rewards"].double()
        returns = generalized_advantages(
            rewards, torch.zeros_like(rewards), batch["terminated"] | batch["truncated"],
            torch.zeros_like(batch["truncated"]),
            torch.zeros(rewards.shape[1], dtype=rewards.dtype),
            reset_step=batch["reset_step"], gamma=self.gamma, gae_lambda=1.0,
        )  # fmt: skip
        valid = returns.valid
        weights = returns.returns[valid]
        n = weights.numel()
        if n < 2:
            raise ValueError("a rollout needs at least two transitions for the baseline")
        # leave-one-out baseline: G_i minus the mean of the others keeps the estimate unbiased
        weights = (weights - weights.mean()) * n / (n - 1)
        log_prob = self.policy.log_prob(batch["obs"][valid], batch["actions"][valid])
        return score_function_surrogate(log_prob, weights.to(log_prob.dtype))

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        """One gradient step on the negated surrogate."""
        loss = -self.surrogate(batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def evaluate(
    agent: OnPolicyAgent, env: str, n_episodes: int, deterministic: bool = True,
    seed: int | None = None,
) -> tuple[float, float]:  # fmt: skip
    """(mean, std) of the undiscounted returns of n_episodes episodes of env under agent."""
    single = gymnasium.make(env)
    returns = []
    for episode in range(n_episodes):
        obs, _ = single.reset(seed=None if seed is None else seed + episode)
        total, done = 0.0, False
        while not done:
            action = agent.predict(obs[None], deterministic=deterministic)[0]
            obs, reward, terminated, truncated, _ = single.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))
