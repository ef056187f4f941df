"""evidence() on models with constrained parameters, against closed-form evidences.

Each model is fitted with ``constraints``; every method must integrate on the fit's
unconstrained scale with the log-Jacobian added, so all of them estimate the same p(y).
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import betaln, gammaln

import probcalc as pc

D = torch.distributions
F64 = torch.float64


def _t(x):
    return torch.as_tensor(x, dtype=F64)


# --- normal data, unknown mean and variance (normal-inverse-gamma prior) -------------------

NIG_PRIOR = {"m0": 0.5, "k0": 2.0, "a0": 3.0, "b0": 2.0}


def _normal_data(n=25, seed=0):
    rng = np.random.default_rng(seed)
    return _t(rng.normal(1.3, 1.7, size=n))


def _nig_exact(y):
    m0, k0, a0, b0 = NIG_PRIOR.values()
    y = y.numpy()
    n, ybar = y.size, y.mean()
    kn, an = k0 + n, a0 + n / 2
    bn = b0 + 0.5 * ((y - ybar) ** 2).sum() + k0 * n * (ybar - m0) ** 2 / (2 * kn)
    return float(
        gammaln(an)
        - gammaln(a0)
        + a0 * math.log(b0)
        - an * math.log(bn)
        + 0.5 * math.log(k0 / kn)
        - n / 2 * math.log(2 * math.pi)
    )


def _nig_log_joint(y):
    """log p(y, μ, v) written out: y ~ N(μ, v), μ | v ~ N(m0, v / k0), v ~ InvGamma(a0, b0)."""
    m0, k0, a0, b0 = NIG_PRIOR.values()
    n = y.numel()

    def log_joint(theta):
        mu, v = theta[0], theta[1]
        likelihood = -0.5 * n * torch.log(2 * math.pi * v) - ((y - mu) ** 2).sum() / (2 * v)
        prior_mu = -0.5 * torch.log(2 * math.pi * v / k0) - k0 * (mu - m0) ** 2 / (2 * v)
        prior_v = a0 * math.log(b0) - math.lgamma(a0) - (a0 + 1) * torch.log(v) - b0 / v
        return likelihood + prior_mu + prior_v

    return log_joint


def _normal_gamma_log_joint(y):
    """The same model with the precision τ = 1/v, written with torch.distributions."""
    m0, k0, a0, b0 = (_t(value) for value in NIG_PRIOR.values())

    def log_joint(theta):
        mu, tau = theta[0], theta[1]
        return (
            D.Normal(mu, tau.rsqrt()).log_prob(y).sum()
            + D.Normal(m0, (k0 * tau).rsqrt()).log_prob(mu)
            + D.Gamma(a0, b0).log_prob(tau)
        )

    return log_joint


# --- Poisson counts with a gamma prior, binomial trials with a beta prior ------------------


def _poisson_gamma(a=2.0, b=0.5, seed=1, n=12):
    y = _t(np.random.default_rng(seed).poisson(3.0, size=n))
    exact = float(
        a * math.log(b)
        - gammaln(a)
        + gammaln(a + y.sum().item())
        - (a + y.sum().item()) * math.log(b + n)
        - gammaln(y.numpy() + 1).sum()
    )

    def log_joint(theta):
        rate = theta[0]
        return D.Poisson(rate).log_prob(y).sum() + D.Gamma(_t(a), _t(b)).log_prob(rate)

    return log_joint, exact


def _beta_binomial(alpha=2.0, beta=3.0, seed=2):
    rng = np.random.default_rng(seed)
    trials = _t(rng.integers(5, 15, size=6))
    successes = _t(rng.binomial(trials.numpy().astype(int), 0.3))
    k, m = successes.numpy(), trials.numpy()
    log_choose = gammaln(m + 1) - gammaln(k + 1) - gammaln(m - k + 1)
    exact = float(
        log_choose.sum()
        + betaln(alpha + successes.sum().item(), beta + (trials - successes).sum().item())
        - betaln(alpha, beta)
    )

    def log_joint(theta):
        p = theta[0]
        return D.Binomial(trials, probs=p).log_prob(successes).sum() + D.Beta(
            _t(alpha), _t(beta)
        ).log_prob(p)

    return log_joint, exact


def _models():
    y = _normal_data()
    poisson, poisson_exact = _poisson_gamma()
    binomial, binomial_exact = _beta_binomial()
    return {
        "normal-inverse-gamma (μ, v)": (
            _nig_log_joint(y),
            _nig_exact(y),
            [0.0, 1.0],
            [None, "positive"],
        ),
        "normal-gamma with torch.distributions (μ, τ)": (
            _normal_gamma_log_joint(y),
            _nig_exact(y),
            [0.0, 1.0],
            [None, "positive"],
        ),
        "Poisson-gamma": (poisson, poisson_exact, [1.0], ["positive"]),
        "beta-binomial": (binomial, binomial_exact, [0.5], ["unit"]),
        "Poisson-gamma, twice, and beta-binomial (3-D, Gauss-Hermite)": (
            lambda t: poisson(t[0:1]) + poisson(t[1:2]) + binomial(t[2:3]),
            2 * poisson_exact + binomial_exact,
            [1.0, 2.0, 0.5],
            ["positive", "positive", "unit"],
        ),
    }


MODELS = _models()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_method_on_a_constrained_fit_integrates_in_the_fits_coordinates(name):
    log_joint, exact, theta0, constraints = MODELS[name]
    laplace = pc.laplace.fit(log_joint, _t(theta0), constraints=constraints)
    assert laplace.scale == "unconstrained"

    quadrature = pc.evidence(log_joint, method="quadrature", laplace=laplace)
    true_error = abs(float(quadrature.log_evidence) - exact)
    assert true_error < 1e-6, (float(quadrature.log_evidence), exact)
    assert quadrature.diagnostics["converged"]
    assert float(quadrature.error) < 1e-5

    mc = pc.evidence(log_joint, method="mc", laplace=laplace, n_samples=20_000, seed=3)
    assert mc.diagnostics["khat"] < 0.5
    assert abs(float(mc.log_evidence) - exact) < 4 * mc.error  # four standard errors

    # Laplace on the unconstrained scale is an approximation: close, not exact
    on_laplace = pc.evidence(log_joint, method="laplace", laplace=laplace)
    assert float(on_laplace.log_evidence) == float(laplace.log_evidence)
    assert abs(float(on_laplace.log_evidence) - exact) < 0.1


def test_evidence_makes_a_constrained_fit_itself_when_given_constraints():
    log_joint, exact, theta0, constraints = MODELS["normal-gamma with torch.distributions (μ, τ)"]
    for method in ("quadrature", "mc"):
        result = pc.evidence(
            log_joint, method=method, theta0=_t(theta0), constraints=constraints, seed=0
        )
        tolerance = 1e-6 if method == "quadrature" else 4 * result.error
        assert abs(float(result.log_evidence) - exact) < tolerance


def test_a_fit_with_a_prior_precision_adds_its_prior_to_every_method():
    """Bayesian linear regression, y = Xβ + ε, ε ~ N(0, σ²), β ~ N(0, I/α): the evidence is
    N(y | 0, σ² I + X X'/α), here fitted from the log likelihood with prior_precision=α."""
    rng = np.random.default_rng(4)
    X = _t(rng.normal(size=(30, 2)))
    y = X @ _t([0.7, -1.2]) + 0.5 * _t(rng.normal(size=30))
    alpha, sigma = 2.0, 0.5
    covariance = sigma**2 * torch.eye(30, dtype=F64) + X @ X.T / alpha
    exact = float(D.MultivariateNormal(torch.zeros(30, dtype=F64), covariance).log_prob(y))

    def log_likelihood(beta):
        return D.Normal(X @ beta, sigma).log_prob(y).sum()

    laplace = pc.laplace.fit(log_likelihood, torch.zeros(2, dtype=F64), prior_precision=alpha)
    assert float(laplace.log_evidence) == pytest.approx(exact, abs=1e-9)  # Gaussian: exact
    quadrature = pc.evidence(log_likelihood, method="quadrature", laplace=laplace)
    assert abs(float(quadrature.log_evidence) - exact) < 1e-7
    mc = pc.evidence(log_likelihood, method="mc", laplace=laplace, seed=1)
    assert abs(float(mc.log_evidence) - exact) < 4 * mc.error


def test_a_fit_of_another_model_is_refused_for_its_evidence_and_flagged_as_a_proposal():
    log_joint, _, theta0, constraints = MODELS["Poisson-gamma"]
    laplace = pc.laplace.fit(log_joint, _t(theta0), constraints=constraints)

    def other(theta):
        return log_joint(theta) + 1.0

    with pytest.raises(ValueError, match="not made from this log_joint"):
        pc.evidence(other, method="laplace", laplace=laplace)
    with pytest.warns(UserWarning, match="serves only as the proposal"):
        mc = pc.evidence(other, method="mc", laplace=laplace, seed=0)
    _, exact, _, _ = MODELS["Poisson-gamma"]
    assert abs(float(mc.log_evidence) - (exact + 1.0)) < 4 * mc.error
    with pytest.raises(ValueError, match="constraints="):
        pc.evidence(log_joint, method="mc", laplace=laplace, constraints=["positive"])


def test_a_nan_far_in_the_tails_names_the_point_on_the_users_scale():
    """A float32 prior overflows where float64 does not: the error names θ, not a node."""
    y = _normal_data()

    def log_joint(theta):  # the rate as a Python float makes the gamma prior float32
        mu, tau = theta[0], theta[1]
        return (
            D.Normal(mu, tau.rsqrt()).log_prob(y).sum()
            + D.Normal(0.5, 1.0).log_prob(mu)
            + D.InverseGamma(3.0, 2.0).log_prob(1 / tau)
        )

    laplace = pc.laplace.fit(log_joint, _t([0.0, 1.0]), constraints=[None, "positive"])
    with pytest.raises(pc.NonFiniteError, match=r"at θ = \[.*float32"):
        pc.evidence(log_joint, method="quadrature", laplace=laplace)
