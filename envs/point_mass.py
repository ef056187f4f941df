"""A 2-D point mass pushed by a force toward a goal."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._checks import real_number

__all__ = ["PointMassEnv"]


class PointMassEnv(gym.Env):
    """## Description

    A point of unit mass in the plane, pushed by a force toward a goal at the origin:
    ``v' = v + dt (force - damping v)``, ``p' = p + dt v'``, positions kept inside the
    walls ``[-2, 2]²`` (the velocity into a wall is zeroed).

    ## Action Space

    ``Box(-1, 1, (2,))``, scaled by ``max_force`` inside; clipped when stepping.

    ## Observation Space

    ``Box(-inf, inf, (4,))``: position minus goal (2) and velocity (2), float32.

    ## Rewards

    Dense: ``-|p - goal| - 0.01 |action|²`` per step.

    ## Starting State

    Position uniform in ``[-1.5, 1.5]²``, velocity 0, from ``self.np_random``.

    ## Episode End

    Terminates when ``|p - goal| < 0.05`` and ``|v| < 0.1``; truncated after
    ``max_episode_steps`` (200 when made through ``gymnasium.make``).

    ## Arguments

    ``dt`` (0.05), ``damping`` (0.5), ``max_force`` (2.0): finite numbers, dt and max_force
    > 0, damping >= 0; otherwise the constructor raises ValueError (TypeError for values that
    are not numbers).
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(self, dt: float = 0.05, damping: float = 0.5, max_force: float = 2.0) -> None:
        self.dt = real_number(dt, "dt", above=0.0)
        self.damping = real_number(damping, "damping", at_least=0.0)
        self.max_force = real_number(max_force, "max_force", above=0.0)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32)
        self._position = np.zeros(2)
        self._velocity = np.zeros(2)

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._position, self._velocity]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.5, 1.5, size=2)
        self._velocity = np.zeros(2)
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        force = self.max_force * a
        self._velocity = self._velocity + self.dt * (force - self.damping * self._velocity)
        position = self._position + self.dt * self._velocity
        walls = np.abs(position) > 2.0
        self._velocity[walls] = 0.0
        self._position = np.clip(position, -2.0, 2.0)
        distance = float(np.linalg.norm(self._position))
        reward = -distance - 0.01 * float(a @ a)
        terminated = distance < 0.05 and float(np.linalg.norm(self._velocity)) < 0.1
        return self._observation(), reward, terminated, False, {"distance": distance}
