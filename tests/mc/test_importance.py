"""importance_sampling and psis against conjugate evidences and Pareto samples."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import Beta, Binomial, MultivariateNormal, Normal

import probcalc as pc
from probcalc.core import ConvergenceWarning, NonFiniteError

Y = torch.tensor([0.3, 1.2, -0.4, 0.9, 2.1])
TAU = 1.5


def _normal_normal():
    """y_i ~ N(θ, 1), θ ~ N(0, τ²): p(y) = N(y | 0, I + τ² 11')."""

    def log_joint(theta):
        prior = Normal(0.0, TAU).log_prob(theta)
        return prior + Normal(theta[:, None], 1.0).log_prob(Y).sum(1)

    n = len(Y)
    exact = float(MultivariateNormal(torch.zeros(n), torch.eye(n) + TAU**2).log_prob(Y))
    post_var = 1 / (1 / TAU**2 + n)
    return log_joint, exact, post_var * float(Y.sum()), math.sqrt(post_var)


@pytest.mark.parametrize("seed", range(5))
def test_normal_normal_log_evidence_within_three_standard_errors(seed):
    log_joint, exact, post_mean, post_sd = _normal_normal()
    proposal = Normal(torch.tensor(post_mean + 0.2), torch.tensor(1.5 * post_sd))
    result = pc.mc.importance_sampling(log_joint, proposal, 5000, seed=seed)
    assert abs(float(result.log_evidence) - exact) < 3 * float(result.stderr)
    assert result.khat < 0.5 and 1000 < result.ess <= 5000


@pytest.mark.parametrize("seed", range(5))
def test_beta_binomial_log_evidence_within_three_standard_errors(seed):
    """θ ~ Beta(2, 3), y | θ ~ Binomial(20, θ), y = 13: p(y) = C(20,13) B(15, 10) / B(2, 3)."""
    a, b, trials, y = 2.0, 3.0, 20, 13.0

    def log_joint(theta):
        return Beta(a, b).log_prob(theta) + Binomial(trials, probs=theta).log_prob(torch.tensor(y))

    exact = (
        math.log(scipy.special.comb(trials, y))
        + scipy.special.betaln(a + y, b + trials - y)
        - scipy.special.betaln(a, b)
    )
    proposal = Beta(torch.tensor(8.0), torch.tensor(5.0))
    result = pc.mc.importance_sampling(log_joint, proposal, 5000, seed=seed)
    assert abs(float(result.log_evidence) - exact) < 3 * float(result.stderr)


def test_khat_flags_a_narrow_proposal_and_passes_a_wide_one():
    log_joint, _, post_mean, post_sd = _normal_normal()
    with pytest.warns(ConvergenceWarning, match="k-hat"):
        narrow = pc.mc.importance_sampling(
            log_joint, Normal(torch.tensor(post_mean), torch.tensor(0.1 * post_sd)), 4000, seed=0
        )
    wide = pc.mc.importance_sampling(
        log_joint, Normal(torch.tensor(post_mean), torch.tensor(3.0 * post_sd)), 4000, seed=0
    )
    assert narrow.khat > 0.7
    assert wide.khat < 0.5


def test_self_normalized_expectation_gives_the_posterior_mean():
    log_joint, _, post_mean, post_sd = _normal_normal()
    proposal = Normal(torch.tensor(post_mean), torch.tensor(2 * post_sd))
    result = pc.mc.importance_sampling(log_joint, proposal, 20_000, seed=4)
    estimate = result.expectation(lambda theta: theta)
    assert abs(float(estimate.value) - post_mean) < 4 * float(estimate.stderr)


def test_log_evidence_is_differentiable_in_the_target_parameters():
    """d/dτ log p(y) by autograd through the weights, against the closed form."""
    tau = torch.tensor(TAU, requires_grad=True)

    def log_joint(theta):
        return Normal(0.0, tau).log_prob(theta) + Normal(theta[:, None], 1.0).log_prob(Y).sum(1)

    _, _, post_mean, post_sd = _normal_normal()
    result = pc.mc.importance_sampling(
        log_joint, Normal(torch.tensor(post_mean), torch.tensor(1.3 * post_sd)), 50_000, seed=2
    )
    (grad,) = torch.autograd.grad(result.log_evidence, tau)
    exact = MultivariateNormal(torch.zeros(5), torch.eye(5) + tau**2).log_prob(Y)
    (exact_grad,) = torch.autograd.grad(exact, tau)
    assert float(grad) == pytest.approx(float(exact_grad), abs=0.02)


@pytest.mark.parametrize("shape", [0.2, 0.5, 0.9])
def test_psis_recovers_the_shape_of_generalized_pareto_weights(shape):
    """Weights drawn from a generalized Pareto with shape ξ: k-hat averages to ξ ± 0.05."""
    estimates = []
    for seed in range(20):
        weights = scipy.stats.genpareto(c=shape).rvs(size=10_000, random_state=seed)
        _, khat = pc.mc.psis(torch.log(torch.as_tensor(weights)))
        estimates.append(float(khat))
    assert abs(np.mean(estimates) - shape) < 0.05


def test_psis_smooths_only_the_tail_and_keeps_the_order():
    log_w = torch.as_tensor(np.log(scipy.stats.genpareto(c=0.6).rvs(size=1000, random_state=1)))
    smoothed, _ = pc.mc.psis(log_w)
    order = torch.argsort(log_w)
    tail = math.ceil(min(0.2 * 1000, 3 * math.sqrt(1000)))
    assert torch.equal(smoothed[order[:-tail]], log_w[order[:-tail]])
    assert bool((smoothed[order[-tail:]] <= log_w.max() + 1e-12).all())
    assert bool((torch.diff(smoothed[order[-tail:]]) >= -1e-12).all())


def test_bad_input():
    log_joint, _, post_mean, post_sd = _normal_normal()
    proposal = Normal(torch.tensor(post_mean), torch.tensor(post_sd))
    with pytest.raises(NonFiniteError, match="log_target is nan"):
        pc.mc.importance_sampling(lambda t: log_joint(t) * torch.nan, proposal, 100, seed=0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 10"):
        pc.mc.importance_sampling(log_joint, proposal, 5)
    with pytest.raises(ValueError, match="at least 10"):
        pc.mc.psis(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        pc.mc.psis(torch.tensor([0.0] * 20 + [math.nan]))
