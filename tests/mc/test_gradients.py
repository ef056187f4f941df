"""Score-function and pathwise gradient estimators against closed-form gradients.

E_{N(μ,σ)}[x² + sin x] = μ² + σ² + sin(μ) e^(-σ²/2), so
d/dμ = 2μ + cos(μ) e^(-σ²/2) and d/dσ = 2σ - σ sin(μ) e^(-σ²/2).
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

import probcalc as pc
from probcalc.core import NonFiniteError

MU, SIGMA = 0.5, 1.2
EXACT = (
    2 * MU + math.cos(MU) * math.exp(-(SIGMA**2) / 2),
    2 * SIGMA - SIGMA * math.sin(MU) * math.exp(-(SIGMA**2) / 2),
)


def _repeat(estimator, repeats, n, offset=0.0, **kwargs):
    """Gradient estimates (repeats, 2) from independent seeds."""
    grads = []
    for seed in range(repeats):
        mu = torch.tensor(MU, requires_grad=True)
        sigma = torch.tensor(SIGMA, requires_grad=True)
        surrogate = estimator(
            lambda x: x**2 + torch.sin(x) + offset, Normal(mu, sigma), n, seed=seed, **kwargs
        )
        surrogate.backward()
        grads.append([float(mu.grad), float(sigma.grad)])
    return np.array(grads)


@pytest.mark.parametrize(
    ("estimator", "kwargs"),
    [
        (pc.mc.pathwise_grad, {}),
        (pc.mc.score_function_grad, {}),
        (pc.mc.score_function_grad, {"baseline": "leave-one-out"}),
    ],
)
def test_estimators_are_unbiased_within_four_standard_errors(estimator, kwargs):
    grads = _repeat(estimator, repeats=100, n=500, **kwargs)
    mean, stderr = grads.mean(axis=0), grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
    assert np.all(np.abs(mean - EXACT) < 4 * stderr), (mean, EXACT, stderr)


def test_baselines_cut_the_score_function_variance_at_least_tenfold():
    """With f = x² + sin x + 50 the offset inflates the plain estimator's variance (by about
    50² Var(score) / n); any baseline removes it."""
    plain = _repeat(pc.mc.score_function_grad, repeats=100, n=200, offset=50.0)
    for baseline in ("mean", "leave-one-out"):
        reduced = _repeat(
            pc.mc.score_function_grad, repeats=100, n=200, offset=50.0, baseline=baseline
        )
        assert np.all(plain.var(axis=0) > 10 * reduced.var(axis=0)), baseline


def test_the_surrogate_value_estimates_the_expectation():
    mu, sigma = torch.tensor(MU, requires_grad=True), torch.tensor(SIGMA, requires_grad=True)
    surrogate = pc.mc.score_function_grad(lambda x: x**2, Normal(mu, sigma), 100_000, seed=0)
    assert float(surrogate.detach()) == pytest.approx(MU**2 + SIGMA**2, rel=0.02)


def test_score_function_works_for_discrete_distributions():
    """d/dp E_{Bernoulli(p)}[(x - 0.3)²] = (0.7)² - (0.3)² = 0.4."""
    p = torch.tensor(0.6, requires_grad=True)
    grads = []
    for seed in range(50):
        p.grad = None
        pc.mc.score_function_grad(
            lambda x: (x - 0.3) ** 2, Bernoulli(p), 400, seed=seed, baseline="leave-one-out"
        ).backward()
        grads.append(float(p.grad))
    assert abs(np.mean(grads) - 0.4) < 4 * np.std(grads, ddof=1) / math.sqrt(50)


def test_bad_input():
    p = torch.tensor(0.6, requires_grad=True)
    with pytest.raises(TypeError, match="reparameterized"):
        pc.mc.pathwise_grad(lambda x: x, Bernoulli(p), 10)
    normal = Normal(torch.tensor(0.0, requires_grad=True), torch.tensor(1.0))
    with pytest.raises(NonFiniteError):
        pc.mc.score_function_grad(lambda x: torch.log(x), normal, 100, seed=0)
    with pytest.raises(ValueError, match="n_samples must be"):
        pc.mc.pathwise_grad(torch.sin, normal, 0)
    with pytest.raises(ValueError, match="n_samples must be"):
        pc.mc.score_function_grad(torch.sin, normal, 1)
    with pytest.raises(ValueError, match="'mean', 'leave-one-out'"):
        pc.mc.score_function_grad(torch.sin, normal, 10, baseline="median")
