"""A one-step continuous bandit with a known reward surface."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._checks import real_array, real_number

__all__ = ["ContinuousBanditEnv"]


class ContinuousBanditEnv(gym.Env):
    """## Description

    One-step episodes: the agent picks an action a and receives
    ``r(a) = peak - (a - optimum)' W (a - optimum) + noise``, W = diag(curvature). Under a
    Gaussian policy a ~ N(μ, diag(σ²)) (unclipped) the expected reward is
    ``peak - (μ - optimum)' W (μ - optimum) - Σ W_ii σ_i²``, so the optimum and the
    policy gradient are known in closed form (:meth:`expected_reward`,
    :meth:`expected_reward_gradient`): the smallest test of a policy-gradient estimator.

    ## Action Space

    ``Box(-1, 1, (d,))``; actions outside are clipped when stepping.

    ## Observation Space

    ``Box(-1, 1, (1,))``: always 0 (there is no state).

    ## Rewards

    ``r(a)`` above, plus ``N(0, noise_std²)`` noise.

    ## Starting State

    The constant observation 0.

    ## Episode Truncation

    Every episode terminates after its one step.

    ## Arguments

    ``optimum`` (default (0.3, -0.5)), ``curvature`` (default (2, 1)), ``peak`` (1.0),
    ``noise_std`` (0.1). Finite real numbers: optimum inside [-1, 1]^d, curvature > 0 of its
    shape, noise_std >= 0; otherwise the constructor raises ValueError (TypeError for values
    that are not numbers).
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        optimum: np.ndarray | None = None,
        curvature: np.ndarray | None = None,
        peak: float = 1.0,
        noise_std: float = 0.1,
    ) -> None:
        self.optimum = real_array([0.3, -0.5] if optimum is None else optimum, "optimum", ndim=1)
        self.curvature = real_array(
            [2.0, 1.0] if curvature is None else curvature, "curvature", ndim=1
        )
        if self.curvature.shape != self.optimum.shape or np.any(self.curvature <= 0):
            raise ValueError(
                f"curvature must be positive and have the shape of optimum "
                f"{self.optimum.shape}, got {self.curvature.tolist()}"
            )
        if np.any(np.abs(self.optimum) > 1):
            raise ValueError(
                f"optimum must lie inside the action box [-1, 1]^d, got {self.optimum.tolist()}"
            )
        self.peak = real_number(peak, "peak")
        self.noise_std = real_number(noise_std, "noise_std", at_least=0.0)
        d = self.optimum.size
        self.action_space = spaces.Box(-1.0, 1.0, (d,), dtype=np.float32)
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        gap = a - self.optimum
        reward = self.peak - float(gap @ (self.curvature * gap))
        reward += self.noise_std * float(self.np_random.normal())
        return np.zeros(1, dtype=np.float32), reward, True, False, {}

    def expected_reward(self, mean: np.ndarray, std: np.ndarray) -> float:
        """E[r(a)] for a ~ N(mean, diag(std²)), ignoring clipping."""
        gap = np.asarray(mean, dtype=float) - self.optimum
        std = np.asarray(std, dtype=float)
        return self.peak - float(gap @ (self.curvature * gap)) - float(self.curvature @ std**2)

    def expected_reward_gradient(
        self, mean: np.ndarray, std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(∂/∂mean, ∂/∂std) of :meth:`expected_reward`: (-2W(mean - optimum), -2W std)."""
        gap = np.asarray(mean, dtype=float) - self.optimum
        return -2 * self.curvature * gap, -2 * self.curvature * np.asarray(std, dtype=float)
