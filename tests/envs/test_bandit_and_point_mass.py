"""ContinuousBandit-v0 and PointMass-v0: Gymnasium's checker, closed forms, a controller."""

import math

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from probcalc.envs.bandit import ContinuousBanditEnv

import probcalc as pc


@pytest.mark.parametrize("env_id", ["probcalc/ContinuousBandit-v0", "probcalc/PointMass-v0"])
def test_environments_pass_the_checker_and_vectorize(env_id):
    check_env(gymnasium.make(env_id).unwrapped)
    envs = gymnasium.make_vec(env_id, num_envs=4, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    obs, reward, *_ = envs.step(envs.action_space.sample())
    assert obs.shape[0] == 4 and reward.shape == (4,)


def test_bandit_expected_reward_matches_its_rewards_and_its_gradient_is_exact():
    env = ContinuousBanditEnv()
    mean, std = np.array([0.1, -0.2]), np.array([0.2, 0.15])
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    rewards = np.array([env.step(mean + std * rng.normal(size=2))[1] for _ in range(20_000)])
    stderr = rewards.std(ddof=1) / math.sqrt(len(rewards))
    assert abs(rewards.mean() - env.expected_reward(mean, std)) < 4 * stderr
    g_mean, g_std = env.expected_reward_gradient(mean, std)
    params = torch.tensor(np.concatenate([mean, std]))
    fd = pc.finite_difference(
        lambda p: torch.tensor(env.expected_reward(p[:2].numpy(), p[2:].numpy())), params, order=4
    )
    np.testing.assert_allclose(np.concatenate([g_mean, g_std]), fd.numpy(), atol=1e-8)
    assert env.expected_reward(env.optimum, np.zeros(2)) == pytest.approx(env.peak)


def test_bandit_bad_input():
    with pytest.raises(ValueError, match="inside"):
        ContinuousBanditEnv(optimum=[2.0, 0.0])
    with pytest.raises(ValueError, match="positive"):
        ContinuousBanditEnv(curvature=[1.0, -1.0])


def test_a_damped_controller_brings_the_point_mass_home():
    env = gymnasium.make("probcalc/PointMass-v0")
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        for _ in range(200):
            action = np.clip(-2.0 * obs[:2] - 1.5 * obs[2:], -1, 1)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert terminated, f"seed {seed}: ended {info['distance']:.3f} from the goal"
    first, _ = env.reset(seed=9)
    second, _ = env.reset(seed=9)
    np.testing.assert_array_equal(first, second)
