"""A 2-state LQR (a double integrator) registered for the RL tests, PPO's settings for it,
the linear policy's start (u = 0) and learned gain, and training over several seeds."""

import math

import gymnasium
import numpy as np
import torch
from probcalc.envs.lqr import LQREnv

LQR2 = "probcalc-test/LQR2-v0"
A = np.array([[1.0, 0.1], [0.0, 1.0]])  # a double integrator, dt = 0.1
B = np.array([[0.0], [0.1]])
LQR2_SETTINGS = {"A": A, "B": B, "gamma": 0.95, "noise_std": 0.05, "action_scale": 10.0}
if LQR2 not in gymnasium.registry:
    gymnasium.register(
        LQR2, entry_point="probcalc.envs.lqr:LQREnv", kwargs=LQR2_SETTINGS, max_episode_steps=100
    )

# PPO with a linear policy on LQR2 (tests/rl/test_ppo.py; test_data_parallel.py splits the
# environments over two ranks). A learning rate of 5e-3 sent two seeds in six out of the
# stabilizing gains in the first 10,000 steps, from where they recovered slowly; 2e-3 none
# in twelve seeds of 50,000 steps (one in twelve when the rate decays over 70,000).
PPO_LQR2 = {
    "policy": "linear",
    "n_envs": 8,
    "n_steps": 128,
    "gamma": 0.95,
    "learning_rate": 2e-3,
    "lr_schedule": "linear",
    "log_std_init": math.log(0.05),
    "learn_std": False,
    "n_epochs": 10,
    "batch_size": 128,
    "max_grad_norm": 10.0,
    "normalize_rewards": True,
}


def start_at_zero_control(agent):
    """Set the linear policy's mean to 0 (the control u = 0 in every state)."""
    with torch.no_grad():
        agent.policy.mean[0].weight.zero_()
        agent.policy.mean[0].bias.zero_()


def learned_gain(agent, env):
    """The gain K of u = -K x: the action is a = W x + b and u = action_scale a."""
    return -env.action_scale * agent.policy.mean[0].weight.detach().double().numpy()


def train_on_seeds(make, seeds, steps, settings=LQR2_SETTINGS):
    """Train ``make(seed)`` from u = 0 for ``steps`` on each seed; per seed, the exact
    discounted cost of the learned gain over the Riccati optimum's, and the gain's relative
    error ‖K - K*‖ / ‖K*‖ (Frobenius), as an array (seeds, 2)."""
    env = LQREnv(**settings)
    optimal = env.optimal_gain()
    best = env.policy_cost(optimal)
    results = []
    for seed in seeds:
        agent = make(seed)
        start_at_zero_control(agent)
        agent.learn(steps)
        gain = learned_gain(agent, env)
        results.append(
            (env.policy_cost(gain) / best, np.linalg.norm(gain - optimal) / np.linalg.norm(optimal))
        )
    return np.array(results)
