"""REINFORCE on ContinuousBandit-v0 against the closed-form policy gradient."""

import gymnasium
import numpy as np
import pytest
import torch
from bandit import BANDIT, assert_gradient_matches_closed_form, bandit_agent
from probcalc.envs.bandit import ContinuousBanditEnv

import probcalc as pc


def _agent(seed, **options):
    return bandit_agent(pc.rl.REINFORCE, seed, **options)


def test_gradient_at_the_initial_policy_matches_the_closed_form():
    """d/d(bias) E[r] = -2W(bias - a*) = 2W a*, d/d(log std) = -2W std², within 4 stderr
    over 200 independent rollouts."""
    agent = _agent(seed=0)
    assert_gradient_matches_closed_form(agent, agent.surrogate)


def test_training_reaches_the_optimum():
    """A fixed exploration scale and a learning rate decayed to 0 (stochastic approximation):
    the policy's mean settles on the optimum."""
    agent = _agent(seed=1, learning_rate=0.02, lr_schedule="linear", learn_std=False)
    agent.learn(total_steps=60_000)
    mean = agent.predict(np.zeros((1, 1), dtype=np.float32))[0]
    np.testing.assert_allclose(mean, ContinuousBanditEnv().optimum, atol=1e-2)
    average, _ = pc.rl.evaluate(agent, BANDIT, n_episodes=20, seed=0)
    assert average > 0.9  # peak 1, noise 0.1


def test_same_seed_same_parameters():
    first = _agent(seed=3).learn(total_steps=2_000)
    second = _agent(seed=3).learn(total_steps=2_000)
    for a, b in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_discrete_action_space_is_a_type_error():
    with pytest.raises(TypeError, match="Box"):
        pc.rl.REINFORCE("CartPole-v1")
    assert gymnasium.spec("CartPole-v1") is not None


def test_save_and_load_round_trip_predict_and_the_step_count(tmp_path):
    agent = _agent(seed=4, learning_rate=0.02).learn(total_steps=1_000)
    path = tmp_path / "agent.pt"
    agent.save(path)
    loaded = pc.rl.REINFORCE.load(path)
    obs = np.random.default_rng(0).normal(size=(5, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    assert loaded.num_timesteps == agent.num_timesteps
    loaded.learn(total_steps=256)
    assert loaded.num_timesteps == agent.num_timesteps + 256


class _NaNRewardEnv(gymnasium.Env):
    """A one-dimensional environment whose third step returns a NaN reward."""

    def __init__(self):
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t == 3 else 0.0
        return np.zeros(1, dtype=np.float32), reward, False, False, {}


gymnasium.register("probcalc-test/NaNReward-v0", entry_point=_NaNRewardEnv, max_episode_steps=10)
gymnasium.register("probcalc-test/NoTimeLimit-v0", entry_point=_NaNRewardEnv)


def test_a_nan_reward_names_the_step_and_a_missing_time_limit_warns():
    agent = pc.rl.REINFORCE(
        "probcalc-test/NaNReward-v0", policy="linear", n_envs=1, n_steps=5, seed=0
    )
    with pytest.raises(pc.NonFiniteError, match="at step 2"):
        agent.collect()
    with pytest.warns(UserWarning, match="no time limit"):
        pc.rl.REINFORCE("probcalc-test/NoTimeLimit-v0", policy="linear", n_envs=1)
