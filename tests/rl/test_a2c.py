"""A2C on ContinuousBandit-v0 against the closed-form policy gradient, optimum and the
optimal exploration under an entropy bonus."""

import math

import numpy as np
import torch
from probcalc.envs.bandit import ContinuousBanditEnv

import probcalc as pc

BANDIT = "probcalc/ContinuousBandit-v0"
STD = 0.2


def _agent(seed, **options):
    settings = {"policy": "linear", "n_envs": 64, "n_steps": 2, "log_std_init": math.log(STD),
                "optimizer": "adam", "seed": seed, **options}  # fmt: skip
    agent = pc.rl.A2C(BANDIT, **settings)
    with torch.no_grad():
        agent.policy.mean[0].bias.zero_()
    return agent


def test_the_policy_gradient_at_the_initial_policy_matches_the_closed_form():
    """The critic is only a baseline here (one-step episodes): whatever it predicts, the
    gradient of -policy_loss is unbiased for ∇ E[r]; within 4 stderr over 200 rollouts."""
    env = ContinuousBanditEnv()
    g_mean, g_std = env.expected_reward_gradient(np.zeros(2), np.full(2, STD))
    exact = np.concatenate([g_mean, g_std * STD])
    agent = _agent(seed=0)
    grads = []
    for _ in range(200):
        agent.policy.zero_grad()
        (-agent.losses(agent.collect())["policy_loss"]).backward()
        grads.append(np.concatenate([agent.policy.mean[0].bias.grad.numpy(),
                                     agent.policy.log_std.grad.numpy()]))  # fmt: skip
    grads = np.array(grads)
    stderr = grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(axis=0) - exact) < 4 * stderr), (grads.mean(0), exact)


def test_training_reaches_the_optimum():
    agent = _agent(seed=1, learning_rate=0.02, lr_schedule="linear", learn_std=False)
    agent.learn(total_steps=60_000)
    mean = agent.predict(np.zeros((1, 1), dtype=np.float32))[0]
    np.testing.assert_allclose(mean, ContinuousBanditEnv().optimum, atol=1e-2)


def test_the_entropy_bonus_settles_on_the_closed_form_exploration():
    """E[r] + c H = const - Σ W_i σ_i² + c Σ log σ_i is largest at σ_i² = c / (2 W_i):
    with c = 0.08 and W = (2, 1), σ = (0.141, 0.2). Within 5% after 100,000 steps."""
    c = 0.08
    agent = _agent(seed=1, learning_rate=0.01, lr_schedule="linear", learn_std=True, ent_coef=c)
    agent.learn(total_steps=100_000)
    std = agent.policy.log_std.detach().exp().double().numpy()
    expected = np.sqrt(c / (2 * ContinuousBanditEnv().curvature))
    np.testing.assert_allclose(std, expected, rtol=0.05)
