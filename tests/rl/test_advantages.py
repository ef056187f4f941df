"""GAE against discounted sums written out per episode, with termination, truncation and
Gymnasium's autoreset steps."""

import numpy as np
import pytest
import torch

from probcalc.rl.advantages import generalized_advantages

GAMMA = 0.9


def _one_env(
    rewards,
    values,
    terminated,
    truncated,
    next_value,
    final_values,
    reset_step,
    gamma=GAMMA,
    lam=1.0,
):
    return generalized_advantages(
        torch.tensor(rewards)[:, None],
        torch.tensor(values)[:, None],
        torch.tensor(terminated)[:, None],
        torch.tensor(truncated)[:, None],
        torch.tensor([next_value]),
        final_values=None if final_values is None else torch.tensor(final_values)[:, None],
        reset_step=None if reset_step is None else torch.tensor(reset_step)[:, None],
        gamma=gamma,
        gae_lambda=lam,
    )


def test_lambda_one_gives_discounted_return_minus_value_with_termination():
    r = [1.0, 2.0, 3.0, 4.0, 5.0]
    v = [0.5, 0.4, 0.3, 0.2, 0.1]
    term = [False, False, True, False, False]  # episode 1 ends at t=2 (terminal), episode 2 runs on
    out = _one_env(
        r,
        v,
        term,
        [False] * 5,
        next_value=7.0,
        final_values=None,
        reset_step=[False, False, False, True, False],
    )
    # episode 1: returns 1 + .9*2 + .81*3, 2 + .9*3, 3 (nothing after the terminal state)
    expected_returns_1 = [1 + GAMMA * 2 + GAMMA**2 * 3, 2 + GAMMA * 3, 3.0]
    np.testing.assert_allclose(out.returns[:3, 0].numpy(), expected_returns_1, atol=1e-12)
    # t = 3 is the autoreset step: no transition, masked out
    assert not bool(out.valid[3, 0]) and float(out.advantages[3, 0]) == 0.0
    # t = 4: the new episode, bootstrapped from next_value
    assert float(out.returns[4, 0]) == pytest.approx(5.0 + GAMMA * 7.0)


def test_truncation_bootstraps_from_the_final_observation_and_termination_does_not():
    r, v = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    truncated = _one_env(
        r,
        v,
        [False, False, False],
        [False, True, False],
        next_value=0.0,
        final_values=[0.0, 10.0, 0.0],
        reset_step=None,
    )
    assert float(truncated.returns[1, 0]) == pytest.approx(1.0 + GAMMA * 10.0)
    assert float(truncated.returns[0, 0]) == pytest.approx(1.0 + GAMMA * (1.0 + GAMMA * 10.0))
    terminated = _one_env(
        r,
        v,
        [False, True, False],
        [False, False, False],
        next_value=0.0,
        final_values=None,
        reset_step=None,
    )
    assert float(terminated.returns[1, 0]) == pytest.approx(1.0)


def test_lambda_zero_gives_one_step_td_errors():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6), rng.normal(size=6)
    out = _one_env(
        r.tolist(),
        v.tolist(),
        [False] * 6,
        [False] * 6,
        next_value=0.3,
        final_values=None,
        reset_step=None,
        lam=0.0,
    )
    next_values = np.append(v[1:], 0.3)
    np.testing.assert_allclose(
        out.advantages[:, 0].numpy(), r + GAMMA * next_values - v, atol=1e-12
    )


def test_general_lambda_matches_the_weighted_sum_of_n_step_returns():
    """A_t = (1-λ) Σ_n λ^(n-1) A_t^(n) + (tail), here via the explicit Σ (γλ)^k δ_(t+k)."""
    rng = np.random.default_rng(1)
    r, v, lam = rng.normal(size=8), rng.normal(size=8), 0.7
    out = _one_env(
        r.tolist(),
        v.tolist(),
        [False] * 8,
        [False] * 8,
        next_value=-0.2,
        final_values=None,
        reset_step=None,
        lam=lam,
    )
    deltas = r + GAMMA * np.append(v[1:], -0.2) - v
    expected = [sum((GAMMA * lam) ** k * deltas[t + k] for k in range(8 - t)) for t in range(8)]
    np.testing.assert_allclose(out.advantages[:, 0].numpy(), expected, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="final_values"):
        _one_env([1.0], [0.0], [False], [True], next_value=0.0, final_values=None, reset_step=None)
    with pytest.raises(ValueError, match="shape"):
        generalized_advantages(
            torch.zeros(3, 2),
            torch.zeros(3, 1),
            torch.zeros(3, 2),
            torch.zeros(3, 2),
            torch.zeros(2),
        )
