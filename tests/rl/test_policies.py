"""Policies' log-probabilities against torch.distributions built independently."""

import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from probcalc.rl import GaussianPolicy, SquashedGaussianPolicy


def test_gaussian_policy_log_prob_is_a_diagonal_normal():
    torch.manual_seed(0)
    policy = GaussianPolicy(3, 2, hidden=(8,), log_std_init=-0.5).double()
    obs, actions = torch.randn(5, 3), torch.randn(5, 2)
    expected = Normal(policy.mean(obs), torch.exp(torch.tensor(-0.5))).log_prob(actions).sum(-1)
    assert torch.allclose(policy.log_prob(obs, actions), expected, atol=1e-12)


def test_squashed_policy_log_prob_includes_the_tanh_correction():
    torch.manual_seed(1)
    policy = SquashedGaussianPolicy(3, 2, hidden=(8,), log_std_init=0.3).double()
    obs = torch.randn(6, 3)
    actions = policy.sample(obs)
    assert bool((actions.abs() < 1).all())
    reference = TransformedDistribution(
        Normal(policy.mean(obs), torch.exp(torch.tensor(0.3))), [TanhTransform(cache_size=0)]
    )
    expected = reference.log_prob(actions).sum(-1)
    assert torch.allclose(policy.log_prob(obs, actions), expected, atol=1e-8)


def test_linear_policy_and_deterministic_actions():
    policy = GaussianPolicy(4, 1, hidden=()).double()
    assert len(policy.mean) == 1  # one Linear layer
    obs = torch.randn(3, 4)
    assert torch.allclose(policy.sample(obs, deterministic=True), policy.mean(obs))
