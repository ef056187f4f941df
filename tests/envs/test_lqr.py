"""LQR-v0 against an independent Riccati iteration, Monte Carlo rollouts and check_env."""

import math

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from probcalc.envs.lqr import LQREnv

import probcalc  # noqa: F401  (registers the environments)


def _riccati_by_iteration(A, B, Q, R, gamma, iterations=20_000):
    """The discounted Riccati recursion run to its fixed point (value iteration), numpy only."""
    P = Q.copy()
    for _ in range(iterations):
        K = gamma * np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
        P_next = Q + K.T @ R @ K + gamma * (A - B @ K).T @ P @ (A - B @ K)
        if np.max(np.abs(P_next - P)) < 1e-13:
            break
        P = P_next
    return K


def test_passes_gymnasiums_checker_and_registers():
    env = gymnasium.make("probcalc/LQR-v0")
    check_env(env.unwrapped)
    assert env.spec.max_episode_steps == 200
    assert env.observation_space.shape == (3,) and env.action_space.shape == (2,)


def test_optimal_gain_equals_the_riccati_fixed_point_and_minimizes_the_cost():
    env = LQREnv()
    K = env.optimal_gain()
    np.testing.assert_allclose(
        K, _riccati_by_iteration(env.A, env.B, env.Q, env.R, env.gamma), atol=1e-9
    )
    best = env.policy_cost(K)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert env.policy_cost(K + 0.05 * rng.normal(size=K.shape)) > best


def test_policy_cost_equals_monte_carlo_rollouts():
    """64 environments for 1,000 steps (γ^1000 = 4e-5) under u = -K* x: the mean discounted
    return equals -policy_cost(K*) within 4 standard errors."""
    n_envs, steps = 64, 1000
    envs = gymnasium.make_vec(
        "probcalc/LQR-v0", num_envs=n_envs, vectorization_mode="sync", max_episode_steps=steps + 1
    )
    single = LQREnv()
    K = single.optimal_gain()
    obs, _ = envs.reset(seed=3)
    returns = np.zeros(n_envs)
    for t in range(steps):
        action = -(obs.astype(float) @ K.T) / single.action_scale
        assert np.abs(action).max() < 1, "the exact cost assumes the control never clips"
        obs, reward, _, _, _ = envs.step(action.astype(np.float32))
        returns += single.gamma**t * reward
    stderr = returns.std(ddof=1) / math.sqrt(n_envs)
    assert abs(returns.mean() + single.policy_cost(K)) < 4 * stderr


def test_keywords_seeding_and_bad_input():
    env = gymnasium.make(
        "probcalc/LQR-v0", A=np.eye(2) * 1.1, B=np.eye(2), Q=np.eye(2), R=2 * np.eye(2), gamma=0.9
    )
    assert env.unwrapped.gamma == 0.9 and env.observation_space.shape == (2,)
    first, _ = env.reset(seed=5)
    second, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, second)
    assert math.isinf(env.unwrapped.policy_cost(np.zeros((2, 2))))  # √0.9·1.1 > 1: unstable
    with pytest.raises(ValueError, match="match B"):
        LQREnv(A=np.eye(3), B=np.ones((2, 1)))
    with pytest.raises(ValueError, match="gamma"):
        LQREnv(gamma=1.5)
