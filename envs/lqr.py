"""The linear-quadratic regulator as a Gymnasium environment, with its exact answers."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import scipy.linalg
from gymnasium import spaces

from ._checks import real_array, real_number, symmetric

__all__ = ["LQREnv"]

# The default system: a marginally unstable, weakly coupled chain (A's eigenvalues slightly
# above 1) driven by two inputs; without control the state drifts away.
_A = np.array([[1.01, 0.01, 0.0], [0.01, 1.01, 0.01], [0.0, 0.01, 1.01]])
_B = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])


class LQREnv(gym.Env):
    """## Description

    A linear system ``x' = A x + B u + w``, ``w ~ N(0, noise_std² I)``, with the quadratic cost
    ``x'Qx + u'Ru`` per step: the one continuous-control problem whose optimal policy is
    known in closed form. :meth:`optimal_gain` solves the discounted Riccati equation and
    :meth:`policy_cost` gives the exact discounted cost of any linear policy ``u = -K x``, so
    a learned policy can be checked against the truth.

    ## Action Space

    ``Box(-1, 1, (m,))``, scaled by ``action_scale`` inside the environment: u = action_scale ·
    action, clipped to the box when stepping. The exact answers assume u never clips (the
    default scale of 10 leaves the optimal policy well inside it from the starting states).

    ## Observation Space

    ``Box(-inf, inf, (n,))``: the state x (float32).

    ## Rewards

    ``-(x'Qx + u'Ru)`` for the state before the step and the control applied.

    ## Starting State

    ``x_0 ~ N(0, init_std² I)``, drawn from ``self.np_random``.

    ## Episode Truncation

    After ``max_episode_steps`` (200 when made through ``gymnasium.make``); never terminates.

    ## Arguments

    ``A (n, n), B (n, m), Q (n, n), R (m, m)`` (defaults: a 3-state, 2-input chain, Q = I,
    R = I), ``gamma`` (the discount of the exact answers, 0.99), ``noise_std`` (0.1),
    ``init_std`` (1.0), ``action_scale`` (10.0). Matrices of finite real numbers of matching
    shapes, Q symmetric positive semi-definite, R symmetric positive definite, gamma in
    (0, 1], the standard deviations finite and >= 0, action_scale finite and > 0; otherwise
    the constructor raises ValueError (TypeError for values that are not numbers).
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        A: np.ndarray | None = None,
        B: np.ndarray | None = None,
        Q: np.ndarray | None = None,
        R: np.ndarray | None = None,
        gamma: float = 0.99,
        noise_std: float = 0.1,
        init_std: float = 1.0,
        action_scale: float = 10.0,
    ) -> None:
        self.A = real_array(_A if A is None else A, "A", ndim=2)
        self.B = real_array(_B if B is None else B, "B", ndim=2)
        n, m = self.B.shape
        if self.A.shape != (n, n):
            raise ValueError(f"A must be ({n}, {n}) to match B {self.B.shape}, got {self.A.shape}")
        self.Q = np.eye(n) if Q is None else real_array(Q, "Q", ndim=2)
        self.R = np.eye(m) if R is None else real_array(R, "R", ndim=2)
        if self.Q.shape != (n, n) or self.R.shape != (m, m):
            raise ValueError(
                f"Q must be ({n}, {n}) and R ({m}, {m}), got {self.Q.shape} and {self.R.shape}"
            )
        symmetric(self.Q, "Q", definite=False)
        symmetric(self.R, "R", definite=True)
        gamma = real_number(gamma, "gamma", above=0.0, at_most=1.0)
        self.gamma = gamma
        self.noise_std = real_number(noise_std, "noise_std", at_least=0.0)
        self.init_std = real_number(init_std, "init_std", at_least=0.0)
        self.action_scale = real_number(action_scale, "action_scale", above=0.0)
        self.observation_space = spaces.Box(-np.inf, np.inf, (n,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (m,), dtype=np.float32)
        self._state = np.zeros(n)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.init_std * self.np_random.normal(size=self.A.shape[0])
        return self._state.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        control = self.action_scale * np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        x = self._state
        reward = -float(x @ self.Q @ x + control @ self.R @ control)
        noise = self.noise_std * self.np_random.normal(size=x.shape)
        self._state = self.A @ x + self.B @ control + noise
        return self._state.astype(np.float32), reward, False, False, {}

    def optimal_gain(self) -> np.ndarray:
        """K* of the optimal policy u = -K* x for the discounted cost, (m, n).

        With Ã = √γ A, B̃ = √γ B the discounted problem is the undiscounted one: P solves the
        discrete algebraic Riccati equation (scipy.linalg.solve_discrete_are) and
        K* = γ (R + γ B'PB)⁻¹ B'PA.
        """
        root = np.sqrt(self.gamma)
        P = scipy.linalg.solve_discrete_are(root * self.A, root * self.B, self.Q, self.R)
        return self.gamma * np.linalg.solve(
            self.R + self.gamma * self.B.T @ P @ self.B, self.B.T @ P @ self.A
        )

    def policy_cost(self, K: np.ndarray) -> float:
        """The exact expected discounted cost E[Σ γ^t (x'Qx + u'Ru)] of u = -K x over an
        infinite horizon from x_0 ~ N(0, init_std² I): tr(P Σ_0) + γ/(1-γ) tr(P W), with P the
        solution of P = Q + K'RK + γ (A - BK)' P (A - BK) (scipy's discrete Lyapunov solver).
        Infinite when √γ (A - BK) is unstable.
        """
        K = np.asarray(K, dtype=float)
        closed = np.sqrt(self.gamma) * (self.A - self.B @ K)
        if np.max(np.abs(np.linalg.eigvals(closed))) >= 1:
            return float("inf")
        P = scipy.linalg.solve_discrete_lyapunov(closed.T, self.Q + K.T @ self.R @ K)
        start = self.init_std**2 * np.trace(P)
        if self.gamma == 1:
            return float("inf") if self.noise_std > 0 else float(start)
        noise = self.gamma / (1 - self.gamma) * self.noise_std**2 * np.trace(P)
        return float(start + noise)
