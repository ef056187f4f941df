"""Likelihoods against scipy.stats, surrogate losses against their closed-form gradients."""

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.special import expit, log_softmax

import probcalc as pc
from probcalc.core import (
    bernoulli_nll,
    categorical_nll,
    clipped_surrogate_loss,
    gaussian_nll,
    poisson_nll,
    score_function_surrogate,
)

rng = np.random.default_rng(0)


def test_gaussian_nll_matches_scipy_with_every_reduction():
    y, mean, scale = rng.normal(size=20), rng.normal(size=20), rng.uniform(0.5, 2.0, size=20)
    terms = -scipy.stats.norm.logpdf(y, mean, scale)
    args = torch.as_tensor(y), torch.as_tensor(mean), torch.as_tensor(scale)
    assert float(gaussian_nll(*args)) == pytest.approx(terms.sum(), rel=1e-13)
    assert float(gaussian_nll(*args, reduction="mean")) == pytest.approx(terms.mean(), rel=1e-13)
    np.testing.assert_allclose(gaussian_nll(*args, reduction="none").numpy(), terms, rtol=1e-13)
    # a scalar scale broadcasts
    assert float(gaussian_nll(args[0], args[1], 0.7)) == pytest.approx(
        -scipy.stats.norm.logpdf(y, mean, 0.7).sum(), rel=1e-13
    )


def test_bernoulli_nll_matches_scipy_and_is_stable_for_extreme_logits():
    y = rng.integers(0, 2, size=30).astype(float)
    logits = rng.normal(scale=3.0, size=30)
    expected = -scipy.stats.bernoulli.logpmf(y, expit(logits)).sum()
    assert float(bernoulli_nll(torch.as_tensor(y), torch.as_tensor(logits))) == pytest.approx(
        expected, rel=1e-12
    )
    # closed form softplus(z) - y z, at logits where expit rounds to 0 or 1
    z = np.array([-800.0, -40.0, 40.0, 800.0])
    yy = np.array([1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(
        bernoulli_nll(torch.as_tensor(yy), torch.as_tensor(z), reduction="none").numpy(),
        np.logaddexp(0.0, z) - yy * z,
        rtol=1e-14,
    )
    # integer labels work too
    assert float(
        bernoulli_nll(torch.as_tensor(y).long(), torch.as_tensor(logits))
    ) == pytest.approx(expected, rel=1e-12)


def test_categorical_nll_is_the_softmax_cross_entropy():
    logits = rng.normal(size=(15, 4))
    y = rng.integers(0, 4, size=15)
    expected = -log_softmax(logits, axis=1)[np.arange(15), y].sum()
    value = categorical_nll(torch.as_tensor(y), torch.as_tensor(logits))
    assert float(value) == pytest.approx(expected, rel=1e-13)


def test_poisson_nll_matches_scipy():
    log_rate = rng.normal(size=25)
    y = rng.poisson(np.exp(log_rate)).astype(float)
    expected = -scipy.stats.poisson.logpmf(y, np.exp(log_rate)).sum()
    value = poisson_nll(torch.as_tensor(y), torch.as_tensor(log_rate))
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_likelihood_gradients_match_closed_forms():
    """d/dz of the Bernoulli NLL is sigmoid(z) - y; of the Poisson NLL, exp(z) - y."""
    y = torch.tensor([0.0, 1.0, 1.0, 3.0])
    z = torch.tensor([0.3, -1.2, 2.0, 0.5])
    bern = pc.grad(lambda t: bernoulli_nll(y[:3], t))(z[:3])
    assert torch.allclose(bern, torch.sigmoid(z[:3]) - y[:3], atol=1e-14)
    pois = pc.grad(lambda t: poisson_nll(y, t))(z)
    assert torch.allclose(pois, torch.exp(z) - y, atol=1e-14)


def test_likelihoods_reject_data_outside_their_support():
    with pytest.raises(ValueError, match="y must be in"):
        bernoulli_nll(torch.tensor([0.0, 2.0]), torch.zeros(2))
    with pytest.raises(ValueError, match="y must be in"):
        categorical_nll(torch.tensor([0, 4]), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="integer class indices"):
        categorical_nll(torch.tensor([0.0, 1.0]), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="y must be in"):
        poisson_nll(torch.tensor([1.5]), torch.zeros(1))
    with pytest.raises(ValueError, match="scale must be in"):
        gaussian_nll(torch.zeros(2), torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="valid choices are 'sum', 'mean', 'none'"):
        gaussian_nll(torch.zeros(2), torch.zeros(2), 1.0, reduction="total")


def test_likelihoods_work_under_vmap():
    y = torch.tensor([0.0, 1.0, 1.0])
    logits = torch.randn(5, 3)
    batched = torch.func.vmap(lambda z: bernoulli_nll(y, z))(logits)
    looped = torch.stack([bernoulli_nll(y, z) for z in logits])
    assert torch.allclose(batched, looped)


# --------------------------------------------------------------------------------------
# Surrogates


def test_score_function_surrogate_gradient_is_the_score_function_estimate():
    """For q = N(mu, s²): ∇_mu log q(x) = (x - mu) / s², so the surrogate's gradient is
    mean_i f(x_i) (x_i - mu) / s² exactly, for the same samples."""
    mu = torch.tensor(0.7, requires_grad=True)
    s = 1.3
    x = (mu + s * torch.randn(1000)).detach()
    f = x**2
    surrogate = score_function_surrogate(torch.distributions.Normal(mu, s).log_prob(x), f)
    surrogate.backward()
    expected = (f * (x - 0.7) / s**2).mean()
    assert float(mu.grad) == pytest.approx(float(expected), rel=1e-12)


def test_score_function_estimate_is_unbiased_within_four_standard_errors():
    """∇_mu E[x²] = 2 mu under N(mu, s²); the estimate's stderr comes from its terms."""
    mu = torch.tensor(0.7, requires_grad=True)
    s = 1.3
    generator = torch.Generator().manual_seed(11)
    x = (0.7 + s * torch.randn(200_000, generator=generator)).detach()
    log_prob = torch.distributions.Normal(mu, s).log_prob(x)
    score_function_surrogate(log_prob, x**2).backward()
    terms = x**2 * (x - 0.7) / s**2
    stderr = float(terms.std() / np.sqrt(len(terms)))
    assert abs(float(mu.grad) - 2 * 0.7) < 4 * stderr


def test_surrogates_refuse_shapes_that_would_broadcast_silently():
    with pytest.raises(ValueError, match="same shape"):
        score_function_surrogate(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="same shape"):
        clipped_surrogate_loss(torch.zeros(5), torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="positive"):
        clipped_surrogate_loss(torch.zeros(5), torch.zeros(5), torch.zeros(5), clip_range=0.0)


def test_clipped_surrogate_matches_its_definition_and_gradient():
    eps = 0.2
    log_ratio = np.array([-0.5, -0.1, 0.0, 0.1, 0.5, 0.5, -0.5])
    advantage = np.array([1.0, 1.0, -2.0, -1.0, 1.0, -1.0, -1.0])
    ratio = np.exp(log_ratio)
    expected = -np.minimum(ratio * advantage, np.clip(ratio, 1 - eps, 1 + eps) * advantage)
    new = torch.as_tensor(log_ratio).requires_grad_(True)
    old = torch.zeros(7)
    loss = clipped_surrogate_loss(new, old, torch.as_tensor(advantage), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-14)
    loss.sum().backward()
    # the gradient is -r A where the unclipped term is the minimum, 0 where clipping binds
    clipped = np.clip(ratio, 1 - eps, 1 + eps) * advantage < ratio * advantage
    expected_grad = np.where(clipped, 0.0, -ratio * advantage)
    np.testing.assert_allclose(new.grad.numpy(), expected_grad, rtol=1e-14)


def test_clipped_surrogate_gradient_at_ratio_one_is_minus_the_score_surrogate_gradient():
    mu = torch.tensor([0.3, -0.2], requires_grad=True)
    x = torch.randn(50, 2)
    advantage = torch.randn(50)
    dist = torch.distributions.Normal(mu, 1.0)
    log_prob = dist.log_prob(x).sum(-1)
    (clip_grad,) = torch.autograd.grad(
        clipped_surrogate_loss(log_prob, log_prob.detach(), advantage), mu, retain_graph=True
    )
    (score_grad,) = torch.autograd.grad(score_function_surrogate(log_prob, advantage), mu)
    assert torch.allclose(clip_grad, -score_grad, atol=1e-14)
