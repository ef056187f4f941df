"""laplace.fit against conjugate closed forms, scipy, numpy and probcalc.integrate."""

import functools
import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch
from scipy.special import expit

import probcalc as pc
from probcalc.core import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError

fit = pc.laplace.fit


def _linear_regression(n=200, d=10, diagonal_design=False, seed=0):
    """y = Xβ + ε, ε ~ N(0, σ²), β ~ N(0, I/α): everything in closed form."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if diagonal_design:  # orthogonal columns: X'X diagonal
        q, _ = np.linalg.qr(X)
        X = q * rng.uniform(1.0, 5.0, size=d)
    X = torch.as_tensor(X)
    sigma, alpha = 0.5, 2.0
    y = X @ torch.as_tensor(rng.normal(size=d)) + sigma * torch.as_tensor(rng.normal(size=n))

    def log_likelihood(beta):
        return torch.distributions.Normal(X @ beta, sigma).log_prob(y).sum()

    evidence = torch.distributions.MultivariateNormal(
        torch.zeros(n), sigma**2 * torch.eye(n) + X @ X.T / alpha
    ).log_prob(y)
    precision = alpha * torch.eye(d) + X.T @ X / sigma**2
    mean = torch.linalg.solve(precision, X.T @ y / sigma**2)
    return log_likelihood, alpha, float(evidence), mean, torch.linalg.inv(precision), X


@pytest.mark.parametrize(("structure", "rank"), [("full", None), ("lowrank", 10)])
def test_bayesian_linear_regression_is_exact(structure, rank):
    log_likelihood, alpha, evidence, mean, covariance, _ = _linear_regression()
    la = fit(log_likelihood, torch.zeros(10), prior_precision=alpha, structure=structure, rank=rank)
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)
    assert torch.allclose(la.mode, mean, atol=1e-10)
    assert torch.allclose(la.covariance, covariance, atol=1e-12)
    assert torch.allclose(la.marginal_variances(), torch.diagonal(covariance), atol=1e-12)


def test_diag_is_exact_on_a_diagonal_design():
    log_likelihood, alpha, evidence, mean, covariance, _ = _linear_regression(diagonal_design=True)
    la = fit(log_likelihood, torch.zeros(10), prior_precision=alpha, structure="diag")
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)
    assert torch.allclose(la.mode, mean, atol=1e-10)
    assert torch.allclose(la.marginal_variances(), torch.diagonal(covariance), atol=1e-12)


def test_logistic_regression_matches_scipy_and_a_numpy_laplace_evidence():
    rng = np.random.default_rng(1)
    n, d, tau = 300, 10, 1.0
    X = rng.normal(size=(n, d))
    y = (rng.uniform(size=n) < expit(X @ rng.normal(size=d) * 0.5)).astype(float)

    def neg_log_joint_np(w):
        z = X @ w
        return (
            np.sum(np.logaddexp(0, z) - y * z)
            + 0.5 * tau * w @ w
            - 0.5 * d * math.log(tau / (2 * math.pi))
        )

    reference = scipy.optimize.minimize(
        neg_log_joint_np,
        np.zeros(d),
        jac=lambda w: X.T @ (expit(X @ w) - y) + tau * w,
        method="BFGS",
        options={"gtol": 1e-10},
    )
    p = expit(X @ reference.x)
    H = (X * (p * (1 - p))[:, None]).T @ X + tau * np.eye(d)
    numpy_evidence = (
        -neg_log_joint_np(reference.x)
        + 0.5 * d * math.log(2 * math.pi)
        - 0.5 * np.linalg.slogdet(H)[1]
    )
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    la = fit(lambda w: -pc.core.bernoulli_nll(yt, Xt @ w), torch.zeros(d), prior_precision=tau)
    np.testing.assert_allclose(la.mode.numpy(), reference.x, atol=1e-6)
    assert float(la.log_evidence) == pytest.approx(numpy_evidence, abs=1e-8)


@pytest.mark.parametrize("d", [1, 2])
def test_laplace_approaches_the_quadrature_evidence_as_the_data_grow(d):
    """Bernstein-von Mises: the gap to the exact evidence (adaptive cubature) shrinks, O(1/n)."""
    rng = np.random.default_rng(d)
    w_true = rng.normal(size=d)
    gaps = []
    for n in (20, 80, 320):
        X = torch.as_tensor(rng.normal(size=(n, d)))
        y = torch.as_tensor((rng.uniform(size=n) < expit(X.numpy() @ w_true)).astype(float))

        def log_joint(w, X=X, y=y):  # one point (d,), or a batch (m, d) for the quadrature
            prior = torch.distributions.Normal(0.0, 1.0).log_prob(w).sum(-1)
            logits = w @ X.T
            return prior - torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y.expand_as(logits), reduction="none"
            ).sum(-1)

        la = fit(log_joint, torch.zeros(d))
        exact = pc.integrate.log_integral(log_joint, [-math.inf] * d, [math.inf] * d, rtol=1e-10)
        gaps.append(abs(float(la.log_evidence) - float(exact.value)))
    assert gaps[0] < 0.2
    assert gaps[2] < gaps[1] < gaps[0], gaps


def test_diag_and_lowrank_run_at_d_100000_on_a_quadratic_with_known_hessian():
    """log-likelihood -½ Σ a_i θ_i² + bᵀθ with prior precision 1: H = diag(a + 1)."""
    d = 100_000
    rng = np.random.default_rng(0)
    a, b = torch.as_tensor(rng.uniform(0.5, 3.0, d)), torch.as_tensor(rng.normal(size=d))
    a[:5] = torch.tensor([50.0, 40.0, 30.0, 20.0, 10.0])

    def log_likelihood(theta):
        return -0.5 * (a * theta * theta).sum() + b @ theta

    mode = b / (a + 1)
    at_mode = float(-0.5 * ((a + 1) * mode**2).sum() + b @ mode - 0.5 * d * math.log(2 * math.pi))
    diag = fit(
        log_likelihood, torch.zeros(d), prior_precision=1.0, structure="diag", optimizer="newton-cg"
    )
    assert torch.allclose(diag.precision, a + 1, rtol=1e-12)
    exact = at_mode + 0.5 * d * math.log(2 * math.pi) - 0.5 * float(torch.log(a + 1).sum())
    assert float(diag.log_evidence) == pytest.approx(exact, rel=1e-10)
    low = fit(
        log_likelihood,
        torch.zeros(d),
        prior_precision=1.0,
        structure="lowrank",
        rank=5,
        optimizer="newton-cg",
    )
    eigenvalues = low.precision_structure.eigenvalues
    np.testing.assert_allclose(np.sort(eigenvalues.numpy()), [10, 20, 30, 40, 50], rtol=1e-8)
    top = at_mode + 0.5 * d * math.log(2 * math.pi) - 0.5 * math.log(11 * 21 * 31 * 41 * 51)
    assert float(low.log_evidence) == pytest.approx(top, rel=1e-10)


def test_predictive_moments():
    """For a linear f = Aθ: linearized and unscented give A Σ Aᵀ exactly; mc within noise."""
    log_likelihood, alpha, _, mean, covariance, X = _linear_regression()
    la = fit(log_likelihood, torch.zeros(10), prior_precision=alpha)
    A = X[:4]
    exact_cov = A @ covariance @ A.T
    for method in ("linearized", "unscented"):
        p = la.predictive(lambda th: A @ th, method)
        assert torch.allclose(p.mean, A @ mean, atol=1e-10)
        assert torch.allclose(p.covariance, exact_cov, atol=1e-12)
    p = la.predictive(lambda th: A @ th, "mc", n_samples=100_000, seed=0)
    # the standard error of a sample covariance entry: sqrt((C_ii C_jj + C_ij²) / n)
    variances = torch.diagonal(exact_cov)
    stderr = torch.sqrt((torch.outer(variances, variances) + exact_cov**2) / 100_000)
    assert bool(((p.covariance - exact_cov).abs() < 5 * stderr).all())


def test_samples_have_the_posterior_covariance():
    log_likelihood, alpha, _, _, _, _ = _linear_regression()
    low = fit(log_likelihood, torch.zeros(10), prior_precision=alpha, structure="lowrank", rank=3)
    draws = low.sample(200_000, seed=1)
    # each entry's standard error is about sqrt((Σ_ii Σ_jj + Σ_ij²) / n) <= sqrt(2/n) max Σ_ii
    tolerance = 5 * math.sqrt(2 / 200_000) * float(low.marginal_variances().max())
    assert float((torch.cov(draws.T) - low.covariance).abs().max()) < tolerance
    assert torch.allclose(low.marginal_variances(), torch.diagonal(low.covariance), atol=1e-14)


def test_bad_input_and_a_saddle():
    with pytest.raises(NonFiniteError, match="theta0"):
        fit(lambda th: torch.log(th).sum(), torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(d,\)"):
        fit(lambda th: -(th**2).sum(), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="'full', 'diag', 'lowrank'"):
        fit(lambda th: -(th**2).sum(), torch.zeros(2), structure="kron")
    with pytest.raises(ValueError, match="needs rank= an integer"):
        fit(lambda th: -(th**2).sum(), torch.zeros(2), structure="lowrank", prior_precision=1.0)
    with pytest.raises(ValueError, match="needs prior_precision="):
        fit(lambda th: -(th**2).sum(), torch.zeros(2), structure="lowrank", rank=1)

    def saddle(th):  # log p = -θ_0² + θ_1²: Newton from (1, 0) stops at the saddle (0, 0)
        return -(th[0] ** 2) + th[1] ** 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # minimize's own saddle warning
        with pytest.raises(NotPositiveDefiniteError, match="smallest eigenvalue -2") as info:
            fit(saddle, torch.tensor([1.0, 0.0]))
    assert info.value.min_eigenvalue == pytest.approx(-2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repaired = fit(saddle, torch.tensor([1.0, 0.0]), repair="clip")
    assert any("-2" in str(w.message) and "clipped" in str(w.message) for w in caught)
    assert "clipped" in repaired.repair


def test_positive_parameters_are_fitted_on_the_log_scale_with_the_jacobian():
    """y_i ~ Poisson(λ), λ ~ Gamma(a, b). On φ = log λ the density with its Jacobian is
    ∝ exp((a + S) φ - (b + n) e^φ): mode log((a + S)/(b + n)), curvature a + S."""
    a, b = 2.0, 1.0
    y = torch.tensor([3.0, 5.0, 2.0, 4.0, 6.0, 3.0])
    n, total = len(y), float(y.sum())

    def log_joint(lam):
        rate = lam[0]
        return (
            torch.distributions.Gamma(a, b).log_prob(rate)
            + torch.distributions.Poisson(rate).log_prob(y).sum()
        )

    la = fit(log_joint, torch.tensor([1.0]), constraints="positive")
    rate = (a + total) / (b + n)
    assert la.scale == "unconstrained"
    assert float(la.mode) == pytest.approx(math.log(rate), abs=1e-10)
    assert float(la.constrained_mode) == pytest.approx(rate, rel=1e-10)
    assert float(la.precision) == pytest.approx(a + total, rel=1e-10)
    laplace = (
        float(log_joint(torch.tensor([rate])))
        + math.log(rate)
        + 0.5 * math.log(2 * math.pi)
        - 0.5 * math.log(a + total)
    )
    assert float(la.log_evidence) == pytest.approx(laplace, abs=1e-10)
    # and it approximates the exact (negative binomial) evidence to a few percent
    log_factorials = sum(math.lgamma(v + 1) for v in y.tolist())
    exact = (
        a * math.log(b)
        - math.lgamma(a)
        + math.lgamma(a + total)
        - (a + total) * math.log(b + n)
        - log_factorials
    )
    assert abs(float(la.log_evidence) - exact) < 0.05


def test_unit_interval_parameters_are_fitted_on_the_logit_scale():
    """θ ~ Beta(a, b), y ~ Binomial(N, θ): on φ = logit θ the mode is θ* = (a + y)/(a + b + N)
    and the curvature (a + b + N) θ* (1 - θ*)."""
    a, b, trials, y = 2.0, 3.0, 20, 13.0

    def log_joint(theta):
        p = theta[0]
        likelihood = torch.distributions.Binomial(trials, probs=p).log_prob(torch.tensor(y))
        return torch.distributions.Beta(a, b).log_prob(p) + likelihood

    la = fit(log_joint, torch.tensor([0.5]), constraints=["unit"])
    mode = (a + y) / (a + b + trials)
    assert float(la.constrained_mode) == pytest.approx(mode, rel=1e-10)
    assert float(la.precision) == pytest.approx((a + b + trials) * mode * (1 - mode), rel=1e-9)
    with pytest.raises(ValueError, match="outside their support"):
        fit(log_joint, torch.tensor([1.5]), constraints=["unit"])
    with pytest.raises(ValueError, match="unknown constraints"):
        fit(log_joint, torch.tensor([0.5]), constraints=["simplex"])


def test_the_lowrank_distribution_keeps_its_structure():
    log_likelihood, alpha, _, _, _, _ = _linear_regression()
    low = fit(log_likelihood, torch.zeros(10), prior_precision=alpha, structure="lowrank", rank=3)
    dist = low.distribution
    dense = torch.distributions.MultivariateNormal(low.mode, covariance_matrix=low.covariance)
    x = low.sample(5, seed=2)
    assert torch.allclose(dist.log_prob(x), dense.log_prob(x), atol=1e-10)
    assert float(dist.entropy()) == pytest.approx(float(dense.entropy()), abs=1e-10)


def _glm_data(kind, intercept, n=200_000, d=5, seed=0):
    """n rows: an intercept column and d - 1 standard normal covariates; β = (intercept,
    0.5 z) with z standard normal. Poisson counts or Bernoulli outcomes."""
    rng = np.random.default_rng(seed)
    X = np.hstack([np.ones((n, 1)), rng.normal(size=(n, d - 1))])
    eta = X @ np.r_[intercept, 0.5 * rng.normal(size=d - 1)]
    if kind == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.uniform(size=n) < expit(eta)).astype(float)
    return X, y


def _glm_numpy(kind, X, y):
    """The negative log posterior's gradient and Hessian (prior N(0, I)) in numpy, and the
    scale of the gradient's terms, max_j Σ_i |x_ij| (|y_i| + |mean_i|)."""
    mean = np.exp if kind == "poisson" else expit

    def gradient(beta):
        return X.T @ (mean(X @ beta) - y) + beta

    def hessian(beta):
        m = mean(X @ beta)
        weight = m if kind == "poisson" else m * (1 - m)
        return (X * weight[:, None]).T @ X + np.eye(X.shape[1])

    def gradient_scale(beta):
        return float((np.abs(X) * (np.abs(y) + mean(X @ beta))[:, None]).sum(0).max())

    return gradient, hessian, gradient_scale


def _numpy_newton(gradient, hessian, beta):
    """Newton in numpy (the reference): steps halved until ||gradient|| falls; it stops when
    a full step no longer reduces it after a full step did (the rounding floor)."""
    norm, full_before = np.linalg.norm(gradient(beta)), False
    for _ in range(100):
        step, t = np.linalg.solve(hessian(beta), gradient(beta)), 1.0
        while t > 1e-6:
            candidate = beta - t * step
            candidate_norm = np.linalg.norm(gradient(candidate))
            if candidate_norm < norm:
                break
            if t == 1.0 and full_before:
                return beta
            t /= 2
        else:
            return beta
        beta, norm, full_before = candidate, candidate_norm, t == 1.0
    return beta


@functools.cache
def _glm(kind, intercept):
    """The data, the numpy functions, the reference mode (plain Newton in numpy from the GLM
    start: log mean count), and the rounding scale eps Σ|terms| of the gradient there."""
    X, y = _glm_data(kind, intercept)
    gradient, hessian, gradient_scale = _glm_numpy(kind, X, y)
    start = np.zeros(X.shape[1])
    if kind == "poisson":
        start[0] = math.log(y.mean())
    reference = _numpy_newton(gradient, hessian, start)
    rounding = np.finfo(float).eps * gradient_scale(reference)
    assert np.abs(gradient(reference)).max() <= 100 * rounding
    return X, y, gradient, hessian, reference, rounding


def _glm_log_likelihood(kind, X, y):
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    if kind == "poisson":

        def log_likelihood(beta):
            eta = Xt @ beta
            return (yt * eta - torch.exp(eta)).sum()

        return log_likelihood
    return lambda beta: -pc.core.bernoulli_nll(yt, Xt @ beta)


GLMS = [("poisson", 0.0), ("poisson", 8.0), ("logistic", 0.0)]


@pytest.mark.parametrize(("kind", "intercept"), GLMS)
@pytest.mark.parametrize("optimizer", ["newton", "newton-cg"])
def test_the_mode_of_a_200000_row_glm_is_found_to_rounding(kind, intercept, optimizer):
    """Poisson and logistic regressions with 200,000 rows, prior N(0, I). The decrease of f
    that Newton's last steps make is below rounding in f (|f| up to 9e9); with counts near
    3000 per row (intercept 8) max|grad| cannot reach sqrt(eps) either, as moving x by one
    ulp changes it by about 1e-6. The mode is held to the numpy reference by
    ||x - x*|| <= 2 ||∇f(x)|| / λ_min, with ∇f, x* and λ_min from numpy."""
    X, y, gradient, hessian, reference, rounding = _glm(kind, intercept)
    log_likelihood = _glm_log_likelihood(kind, X, y)
    la = fit(log_likelihood, torch.zeros(X.shape[1]), prior_precision=1.0, optimizer=optimizer)
    result = la.optimize_result
    assert result.converged, result.message
    mode = la.mode.numpy()
    eps = np.finfo(float).eps
    H = hessian(reference)
    eigenvalues = np.linalg.eigvalsh(H)
    at_mode = gradient(mode)
    distance = np.linalg.norm(mode - reference)
    bound = 2 * (np.linalg.norm(at_mode) + np.linalg.norm(gradient(reference))) / eigenvalues[0]
    scale = max(1.0, np.abs(reference).max())
    assert distance <= bound + 10 * eps * scale
    assert np.abs(mode - reference).max() <= 1e-11 * scale
    # the gradient is what sqrt(eps), or rounding x to 200 ulps, allows
    allowed = math.sqrt(eps) + 100 * rounding + eigenvalues[-1] * 200 * eps * scale
    assert np.abs(at_mode).max() <= allowed
    np.testing.assert_allclose(la.precision.numpy(), H, rtol=1e-9, atol=1e-9 * np.abs(H).max())


@pytest.mark.parametrize(("kind", "intercept"), GLMS)
def test_lbfgs_on_a_200000_row_glm_meets_its_tolerance_or_says_why(kind, intercept):
    """L-BFGS's line search compares values of f; at |f| ~ 1e5 to 1e10 it may stop above its
    tolerance. It must then say so (a ConvergenceWarning naming the rounding of f), never
    report success with a gradient above tol."""
    X, y, gradient, _, _, rounding = _glm(kind, intercept)
    log_likelihood = _glm_log_likelihood(kind, X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        la = fit(log_likelihood, torch.zeros(X.shape[1]), prior_precision=1.0, optimizer="lbfgs")
    result = la.optimize_result
    tol = np.finfo(float).eps ** (1 / 3)
    if result.converged:
        assert not caught
        assert np.abs(gradient(la.mode.numpy())).max() <= tol + 100 * rounding
    else:
        assert any("resolves" in str(w.message) for w in caught), result.message
        assert float(result.grad.abs().max()) > tol
