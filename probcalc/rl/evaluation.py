"""Evaluating a trained agent: the returns of whole episodes."""

from __future__ import annotations

import numbers

import gymnasium
import numpy as np
import torch

from ..core import random
from .agent import Agent
from .vector import make_vector_env

__all__ = ["evaluate"]


def evaluate(
    agent: Agent,
    env: str | gymnasium.Env | None = None,
    n_episodes: int = 10,
    deterministic: bool = True,
    seed: int | torch.Generator | None = None,
) -> tuple[float, float]:
    """(mean, std) of the undiscounted returns of ``n_episodes`` episodes under ``agent``.

    The episodes run side by side in a vector environment (one environment per episode,
    each stepped until its first episode ends), with the agent's observation normalization
    frozen. Episode i is reset with seed + i.

    Args:
        agent: a trained agent.
        env: an id or instance; default: the agent's own environment (id and keywords).
        n_episodes: how many episodes.
        deterministic: act with the policy's mean (else draw actions).
        seed: the first episode's seed: an int, a torch.Generator (an int is drawn from
            it) or None (Gymnasium's fresh entropy).

    Raises:
        TypeError: agent is not a probcalc.rl agent, or n_episodes, deterministic or seed is
            not of its type (an int, a bool, an int, a torch.Generator or None).
        ValueError: n_episodes < 1, a negative seed, no env given for an agent of an
            unregistered instance, or an id that is not registered (checked before any
            environment is made).
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent must be a probcalc.rl agent (Agent), got {type(agent).__name__}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, numbers.Integral):
        raise TypeError(f"n_episodes must be an integer, got {n_episodes!r}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    n_episodes = int(n_episodes)
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be True or False, got {deterministic!r}")
    if isinstance(random.check_seed(seed), torch.Generator):
        seed = random.integer_seed(seed)
    env_kwargs = {}
    if env is None:
        env = agent.env
        env_kwargs = agent.config.env_kwargs
    envs = make_vector_env(env, n_episodes, "sync", env_kwargs)
    try:
        seeds = None if seed is None else [seed + i for i in range(n_episodes)]
        obs, _ = envs.reset(seed=seeds)
        returns = np.zeros(n_episodes)
        running = np.ones(n_episodes, dtype=bool)
        while running.any():
            obs, reward, terminated, truncated, _ = envs.step(agent.predict(obs, deterministic))
            returns += np.where(running, reward, 0.0)
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return float(returns.mean()), float(returns.std())
