"""evidence (three methods) and nested_laplace against closed forms and scipy."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch
from torch.distributions import Beta, Binomial, MultivariateNormal, Normal

import probcalc as pc
from probcalc.core import NonFiniteError

Y = torch.tensor([0.3, 1.2, -0.4, 0.9, 2.1], dtype=torch.float64)


def normal_normal():
    """y_i ~ N(θ, 1), θ ~ N(0, 1.5²), d = 1."""

    def log_joint(theta):
        return Normal(0.0, 1.5).log_prob(theta[0]) + Normal(theta[0], 1.0).log_prob(Y).sum()

    exact = MultivariateNormal(torch.zeros(5), torch.eye(5) + 1.5**2).log_prob(Y)
    return log_joint, float(exact), torch.zeros(1), True


def beta_binomial_logit():
    """θ ~ Beta(2, 3), y ~ Binomial(20, θ), y = 13, on φ = logit θ with its Jacobian."""

    def log_joint(phi):
        theta = torch.sigmoid(phi[0])
        jacobian = torch.log(theta) + torch.log1p(-theta)
        likelihood = Binomial(20, probs=theta).log_prob(torch.tensor(13.0))
        return Beta(2.0, 3.0).log_prob(theta) + likelihood + jacobian

    exact = (
        math.log(scipy.special.comb(20, 13))
        + scipy.special.betaln(15, 10)
        - scipy.special.betaln(2, 3)
    )
    return log_joint, exact, torch.zeros(1), False


def linear_regression(d=3):
    """y = Xβ + ε, ε ~ N(0, 0.5²), β ~ N(0, I/2)."""
    rng = np.random.default_rng(d)
    X = torch.as_tensor(rng.normal(size=(30, d)))
    y = X @ torch.as_tensor(rng.normal(size=d)) + 0.5 * torch.as_tensor(rng.normal(size=30))

    def log_joint(beta):
        return (
            Normal(0.0, math.sqrt(0.5)).log_prob(beta).sum()
            + Normal(X @ beta, 0.5).log_prob(y).sum()
        )

    exact = MultivariateNormal(torch.zeros(30), 0.25 * torch.eye(30) + X @ X.T / 2).log_prob(y)
    return log_joint, float(exact), torch.zeros(d), True


MODELS = {
    "normal-normal (d=1)": normal_normal,
    "beta-binomial, logit (d=1)": beta_binomial_logit,
    "linear regression (d=2)": lambda: linear_regression(2),
    "linear regression (d=3)": lambda: linear_regression(3),
}


@pytest.mark.parametrize("name", MODELS)
def test_three_methods_agree_with_closed_form_evidences(name):
    log_joint, exact, theta0, gaussian = MODELS[name]()
    quadrature = pc.evidence(log_joint, method="quadrature", theta0=theta0)
    assert abs(float(quadrature.log_evidence) - exact) <= max(quadrature.error, 1e-12)
    mc = pc.evidence(log_joint, method="mc", theta0=theta0, n_samples=20_000, seed=0)
    assert abs(float(mc.log_evidence) - exact) < 4 * mc.error  # a standard error: 4 of them
    assert mc.diagnostics["khat"] < 0.5
    laplace = pc.evidence(log_joint, method="laplace", theta0=theta0)
    if gaussian:  # exact for Gaussian posteriors
        assert float(laplace.log_evidence) == pytest.approx(exact, abs=1e-8)
    else:
        assert abs(float(laplace.log_evidence) - exact) < 0.05


def test_quadrature_over_given_bounds():
    log_joint, exact, _, _ = normal_normal()
    result = pc.evidence(log_joint, method="quadrature", bounds=[(-10.0, 10.0)])
    assert float(result.log_evidence) == pytest.approx(exact, abs=1e-8)


def test_logistic_regression_in_two_dimensions():
    """Quadrature and importance sampling agree within 3 standard errors; Laplace is off by
    its O(1/n) approximation error (n = 40 here: between 1e-3 and 0.1 in log evidence)."""
    rng = np.random.default_rng(3)
    X = torch.as_tensor(rng.normal(size=(40, 2)))
    y = torch.as_tensor((rng.uniform(size=40) < 1 / (1 + np.exp(-X.numpy() @ [1.0, -0.5]))) * 1.0)

    def log_joint(w):
        return Normal(0.0, 1.0).log_prob(w).sum() - pc.core.bernoulli_nll(y, X @ w)

    quadrature = pc.evidence(log_joint, method="quadrature", theta0=torch.zeros(2))
    mc = pc.evidence(log_joint, method="mc", theta0=torch.zeros(2), n_samples=40_000, seed=1)
    laplace = pc.evidence(log_joint, method="laplace", theta0=torch.zeros(2))
    assert abs(float(mc.log_evidence) - float(quadrature.log_evidence)) < 3 * mc.error
    gap = abs(float(laplace.log_evidence) - float(quadrature.log_evidence))
    assert 1e-3 < gap < 0.1


def test_the_evidence_is_differentiable_in_a_hyperparameter():
    """d/dτ log p(y) for the normal-normal model by quadrature and by mc."""
    tau = torch.tensor(1.5, requires_grad=True)

    def log_joint(theta):
        return Normal(0.0, tau).log_prob(theta[0]) + Normal(theta[0], 1.0).log_prob(Y).sum()

    exact = MultivariateNormal(torch.zeros(5), torch.eye(5) + tau**2).log_prob(Y)
    (exact_grad,) = torch.autograd.grad(exact, tau)
    for method, tolerance in (("quadrature", 1e-7), ("mc", 0.02)):
        value = pc.evidence(log_joint, method=method, theta0=torch.zeros(1), seed=0).log_evidence
        (grad,) = torch.autograd.grad(value, tau)
        assert float(grad) == pytest.approx(float(exact_grad), abs=tolerance), method


def test_nested_laplace_matches_the_hyperparameter_posterior_from_scipy():
    """Eight schools: y_j ~ N(θ_j, σ_j²), θ_j ~ N(μ, τ²), μ ~ N(0, 5²), τ ~ half-Cauchy(5),
    h = log τ. Integrating θ and μ out in closed form, p(h | y) ∝ N(y | 0, diag(σ² + τ²) +
    25·11') p(τ) τ; scipy.integrate.quad normalizes it over the same bounds."""
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def log_hyperprior(h):
        tau = torch.exp(h)
        return math.log(2 / (math.pi * 5)) - torch.log1p((tau / 5) ** 2) + h

    def log_joint(theta, h):
        mu, effects = theta[0], theta[1:]
        return (
            Normal(0.0, 5.0).log_prob(mu)
            + Normal(mu, torch.exp(h[0])).log_prob(effects).sum()
            + Normal(effects, sigma).log_prob(y).sum()
            + log_hyperprior(h[0])
        )

    bounds = (-4.0, 4.0)
    result = pc.nested_laplace(log_joint, torch.zeros(9), hyper_bounds=[bounds])

    def unnormalized(h):
        tau2 = math.exp(2 * h)
        cov = np.diag(sigma.numpy() ** 2 + tau2) + 25.0
        log_marginal = scipy.stats.multivariate_normal(np.zeros(8), cov).logpdf(y.numpy())
        return math.exp(log_marginal + float(log_hyperprior(torch.tensor(h))))

    normalizer, _ = scipy.integrate.quad(unnormalized, *bounds, epsabs=0, epsrel=1e-12)
    expected = np.array([unnormalized(float(h)) / normalizer for h in result.hyper_grid[0]])
    np.testing.assert_allclose(result.hyper_density[0].numpy(), expected, atol=1e-4)
    assert float(result.log_evidence) == pytest.approx(math.log(normalizer), abs=1e-4)


def test_bad_input_names_what_to_do():
    log_joint = lambda theta: -(theta**2).sum()  # noqa: E731
    with pytest.raises(ValueError, match=r"method='laplace'.*method='mc'"):
        pc.evidence(log_joint, method="quadrature", theta0=torch.zeros(7))
    with pytest.raises(ValueError, match=r"event shape \(2,\)"):
        pc.evidence(
            log_joint,
            method="mc",
            theta0=torch.zeros(2),
            proposal=MultivariateNormal(torch.zeros(3), torch.eye(3)),
        )
    with pytest.raises(NonFiniteError, match="theta0"):
        pc.evidence(lambda t: torch.log(t).sum(), method="laplace", theta0=-torch.ones(2))
    with pytest.raises(ValueError, match="needs theta0"):
        pc.evidence(log_joint, method="mc")
