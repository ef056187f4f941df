"""What the RL benchmarks share: one scoring routine for every library, and timed training
runs that record each finished episode (step, return), for probcalc and Stable-Baselines3."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

EVAL_SEEDS = range(1000, 1010)


def episode_returns(
    env_id: str, predict: Callable[[np.ndarray], np.ndarray], seeds: Iterable[int] = EVAL_SEEDS
) -> list[float]:
    """Undiscounted returns of one episode per seed, acting with ``predict(obs)``."""
    env = gymnasium.make(env_id)
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(predict(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


class EpisodeLog(BaseCallback):
    """Keeps (step, return) of every episode a Stable-Baselines3 model finishes."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def timed_learn(agent: Any, steps: int) -> tuple[float, list[tuple[int, float]]]:
    """Train a probcalc agent for ``steps``: (wall seconds of learn(), finished episodes)."""
    episodes: list[tuple[int, float]] = []

    def keep(agent: Any, row: dict) -> None:
        episodes.extend((step, value) for step, value, _ in agent.finished_episodes)

    start = time.perf_counter()
    agent.learn(steps, callback=keep)
    return time.perf_counter() - start, episodes


def timed_learn_sb3(model: Any, steps: int) -> tuple[float, list[tuple[int, float]]]:
    """The same for a Stable-Baselines3 (or sb3-contrib) model."""
    log = EpisodeLog()
    start = time.perf_counter()
    model.learn(steps, callback=log)
    return time.perf_counter() - start, log.episodes
