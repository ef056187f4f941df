"""Rollouts: ``n_steps`` of every environment under the current policy, as a
:class:`Rollout` of tensors (n_steps, n_envs, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .sde import draws_at

if TYPE_CHECKING:
    from .agent import OnPolicyAgent

__all__ = ["Episode", "Rollout", "collect_rollout"]


class Rollout(NamedTuple):
    """One rollout, every field (n_steps, n_envs, ...).

    Attributes:
        obs: the observations as the policy saw them (flattened, normalized), (n_steps,
            n_envs, obs_dim), in the networks' dtype.
        actions: the actions drawn, unclipped, (n_steps, n_envs, act_dim).
        rewards: the rewards (normalized if asked), (n_steps, n_envs).
        terminated: whether the step ended the episode in a terminal state, (n_steps, n_envs).
        truncated: whether the step ended the episode at a time limit, (n_steps, n_envs).
        reset_step: whether the step was Gymnasium's autoreset step (it carries no
            transition), (n_steps, n_envs).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    reset_step: torch.Tensor


class Episode(NamedTuple):
    """A finished episode: the step count at its end (all environments, all ranks), its
    undiscounted return and its length."""

    step: int
    episode_return: float
    length: int


def collect_rollout(agent: OnPolicyAgent, episodes: list[Episode]) -> Rollout:
    """``agent.config.n_steps`` steps of the agent's environments from where they stand,
    updating the normalization statistics; the episodes that end are appended to
    ``episodes``.

    Raises:
        NonFiniteError: the environment returned a NaN or infinite reward or observation.
    """
    n_envs, world_size = agent.n_envs, agent.world_size
    columns: dict[str, list] = {name: [] for name in Rollout._fields}
    use_sde, sde_sample_freq = agent.config.use_sde, agent.config.sde_sample_freq
    with torch.no_grad():
        for step in range(agent.n_steps):
            if use_sde and draws_at(step, sde_sample_freq):
                agent.policy.reset_noise(n_envs, agent.generator)  # gSDE's held matrices
            obs_t = agent.policy_input(agent._obs)
            action = agent.policy.sample(obs_t, generator=agent.generator).numpy()
            obs, reward, terminated, truncated, _ = agent.envs.step(agent.to_environment(action))
            at = f"step {agent.num_timesteps // (n_envs * world_size) + step}"
            if agent.group is not False:
                at += f" on rank {agent.rank}"
            agent._check_finite(obs, reward, at)
            reset_step, done = agent._last_done, terminated | truncated
            _record_episodes(agent, reward, reset_step, done, step, episodes)
            if agent.obs_normalizer is not None:
                agent.obs_normalizer.update(obs.reshape(n_envs, -1))
            if agent.reward_normalizer is not None:
                agent.reward_normalizer.update(reward, done, reset_step)
                reward = agent.reward_normalizer(reward, agent._numpy_dtype)
            for name, value in (
                ("obs", obs_t),
                ("actions", action),
                ("rewards", reward),
                ("terminated", terminated),
                ("truncated", truncated),
                ("reset_step", reset_step),
            ):
                columns[name].append(value)
            agent._obs, agent._last_done = obs, done
    rewards = np.stack(columns["rewards"]).astype(agent._numpy_dtype)
    return Rollout(
        obs=torch.stack(columns["obs"]),
        actions=torch.from_numpy(np.stack(columns["actions"])),
        rewards=torch.from_numpy(rewards),
        terminated=torch.from_numpy(np.stack(columns["terminated"])),
        truncated=torch.from_numpy(np.stack(columns["truncated"])),
        reset_step=torch.from_numpy(np.stack(columns["reset_step"])),
    )


def _record_episodes(
    agent: OnPolicyAgent,
    reward: np.ndarray,
    reset_step: np.ndarray,
    done: np.ndarray,
    step: int,
    episodes: list[Episode],
) -> None:
    live = ~reset_step
    agent._episode_return[live] += reward[live]
    agent._episode_length[live] += 1
    at = agent.num_timesteps + (step + 1) * agent.n_envs * agent.world_size
    for i in np.flatnonzero(done):  # one pass per finished episode, not per sample
        episodes.append(Episode(at, float(agent._episode_return[i]), int(agent._episode_length[i])))
    agent._episode_return[done] = 0.0
    agent._episode_length[done] = 0
