"""A2C on ContinuousBandit-v0 against the closed-form policy gradient, optimum and the
optimal exploration under an entropy bonus."""

import numpy as np
from bandit import assert_gradient_matches_closed_form, bandit_agent
from probcalc.envs.bandit import ContinuousBanditEnv

import probcalc as pc


def _agent(seed, **options):
    return bandit_agent(pc.rl.A2C, seed, **{"optimizer": "adam", **options})


def test_the_policy_gradient_at_the_initial_policy_matches_the_closed_form():
    """The critic is only a baseline here (one-step episodes): whatever it predicts, the
    gradient of -policy_loss is unbiased for ∇ E[r]; within 4 stderr over 200 rollouts."""
    agent = _agent(seed=0)
    assert_gradient_matches_closed_form(
        agent, lambda rollout: -agent.losses(rollout)["policy_loss"]
    )


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
