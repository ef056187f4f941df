"""The continuous bandit of the RL tests: an agent whose policy's mean starts at 0, and the
check of its sampled policy gradients against the closed form."""

import math
from collections.abc import Callable

import numpy as np
import torch
from probcalc.envs.bandit import ContinuousBanditEnv

BANDIT = "probcalc/ContinuousBandit-v0"
STD = 0.2  # small enough that the environment almost never clips an action


def bandit_agent(algorithm, seed, **options):
    """A linear-policy agent on the bandit, 64 envs x 2 steps, exploration STD, mean 0."""
    settings = {
        "policy": "linear",
        "n_envs": 64,
        "n_steps": 2,
        "log_std_init": math.log(STD),
        "seed": seed,
        **options,
    }
    agent = algorithm(BANDIT, **settings)
    with torch.no_grad():
        agent.policy.mean[0].bias.zero_()  # the policy's mean is its bias (the observation is 0)
    return agent


def assert_gradient_matches_closed_form(
    agent, surrogate: Callable[[dict[str, torch.Tensor]], torch.Tensor], rollouts: int = 200
) -> None:
    """The mean over ``rollouts`` of the gradient of ``surrogate(rollout)`` in (the mean, the
    log std) is within 4 stderr of the closed form: d/d(bias) E[r] = 2W a*, d/d(log std) =
    σ d/dσ E[r] (the chain rule)."""
    env = ContinuousBanditEnv()
    g_mean, g_std = env.expected_reward_gradient(np.zeros(2), np.full(2, STD))
    exact = np.concatenate([g_mean, g_std * STD])
    grads = []
    for _ in range(rollouts):
        agent.policy.zero_grad()
        surrogate(agent.collect()).backward()
        grads.append(
            np.concatenate(
                [agent.policy.mean[0].bias.grad.numpy(), agent.policy.log_std.grad.numpy()]
            )
        )
    grads = np.array(grads)
    stderr = grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(axis=0) - exact) < 4 * stderr), (grads.mean(0), exact)
