"""NUTS on named targets, each checked against a closed form or an independent reference,
within Monte Carlo standard errors computed from the ESS the sampler reports: a 100-D
ill-conditioned Gaussian with a dense metric, the calibration of the reported ESS over
independent chains, the eight schools in both parameterizations, and the Bayesian logistic
regression on the Pima data."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats as st
import torch

import probcalc as pc
from probcalc.core.errors import ConvergenceWarning
from probcalc.mc.proposals import MultivariateStudentT
from probcalc.mcmc import ess_bulk, mcse_mean, nuts

ROOT = Path(__file__).resolve().parents[2]


def _z(estimate: torch.Tensor, truth: torch.Tensor, stderr: torch.Tensor) -> torch.Tensor:
    return (estimate - truth) / stderr


# --- a 100-D Gaussian with condition number 1e4, under a dense metric ---------------------

D_ILL = 100


def _ill_conditioned_gaussian() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N(m, R diag(lambda) R'): lambda log-spaced over [1e-2, 1e2], R a random rotation
    (numpy's QR of a Gaussian matrix), m standard normal; returns (m, cov, precision)."""
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((D_ILL, D_ILL)))
    eigenvalues = np.logspace(-2.0, 2.0, D_ILL)
    cov = (rotation * eigenvalues) @ rotation.T
    precision = (rotation / eigenvalues) @ rotation.T
    mean = rng.standard_normal(D_ILL)
    return torch.as_tensor(mean), torch.as_tensor(cov), torch.as_tensor(precision)


def test_ill_conditioned_100d_gaussian_under_a_dense_metric():
    """The chains start from the Laplace fit (exact for a Gaussian) and keep its covariance
    as their dense metric (a warmup under 20 iterations adapts the step size only), so NUTS
    sees a whitened target and U-turns within a few doublings, where an identity metric
    (step size set by the smallest scale 0.1, the largest 10) needs hundreds of steps.

    Against the closed form, in Monte Carlo standard errors: the 100 means with the
    reported bulk ESS, sd / sqrt(ess_bulk), within 5; the 100 principal coordinates
    Lambda^(-1/2) R'(x - m), independent N(0, 1), their means and variances within 5
    (mcse_mean's ESS): for these 300 z-scores a false failure has probability below
    300 * P(|N(0,1)| > 5) = 1.7e-4. The 100 marginal variances and 3 covariances within 5.5:
    a mean of squares is skewed and its error comes from an ESS estimated on the same draws
    (over 18 seeds the largest of these 103 |z| was 4.42, of the 300 others 3.93).

    max_tree_depth = 5 (31 steps; the whitened target needs 7 to 15) bounds the cost of a
    chain whose step size falls where the U-turn checks miss the U-turn of this isotropic
    target (step sizes near 0.42 in 100-D): without it one seed in six ran 100x longer."""
    mean, cov, precision = _ill_conditioned_gaussian()

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        z = x - mean
        return -0.5 * z @ precision @ z

    fit = pc.laplace.fit(log_prob, torch.zeros(D_ILL))
    with warnings.catch_warnings(record=True) as caught:
        # R-hat's 1.01 over 100 coordinates is at its noise floor with 4 x 400 draws (the
        # largest of the 100 was 1.010 to 1.017 over 18 seeds); divergences and ESS are
        # checked below
        warnings.simplefilter("always", ConvergenceWarning)
        result = nuts(
            log_prob,
            fit,
            num_samples=400,
            num_warmup=19,
            seed=0,
            mass_matrix="dense",
            max_tree_depth=5,
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert not any("diverged" in m or "ESS" in m for m in messages), messages
    assert float(result.rhat.max()) < 1.02
    assert not result.divergences.any()
    assert result.inverse_mass_matrix.shape == (4, D_ILL, D_ILL)
    torch.testing.assert_close(result.inverse_mass_matrix[0], cov, rtol=1e-6, atol=1e-8)
    assert float(result.tree_depth.double().mean()) < 4.5

    samples = result.samples
    assert samples.shape == (4, 400, D_ILL)
    reported_se = samples.std(dim=(0, 1)) / result.ess_bulk.sqrt()
    z_mean = _z(samples.mean(dim=(0, 1)), mean, reported_se)
    assert z_mean.abs().max() < 5.0, z_mean

    eigenvalues, rotation = torch.linalg.eigh(cov)
    principal = (samples - mean) @ (rotation / eigenvalues.sqrt())  # N(0, I)
    z_principal = _z(principal.mean(dim=(0, 1)), 0.0, mcse_mean(principal))
    z_principal_var = _z((principal**2).mean(dim=(0, 1)), 1.0, mcse_mean(principal**2))
    assert z_principal.abs().max() < 5.0, z_principal
    assert z_principal_var.abs().max() < 5.0, z_principal_var

    centred = samples - mean
    squares = centred**2
    z_var = _z(squares.mean(dim=(0, 1)), cov.diagonal(), mcse_mean(squares))
    pairs = torch.tensor([[0, 1], [2, 50], [98, 99]])
    products = centred[..., pairs[:, 0]] * centred[..., pairs[:, 1]]
    z_cov = _z(products.mean(dim=(0, 1)), cov[pairs[:, 0], pairs[:, 1]], mcse_mean(products))
    assert z_var.abs().max() < 5.5, z_var
    assert z_cov.abs().max() < 5.5, z_cov


# --- the reported ESS against the spread of independent chains' means ---------------------

CALIBRATION_CHAINS = 64


def test_reported_ess_matches_the_spread_of_independent_chain_means():
    """Each of 64 independent chains on N(1, 2^2) gives a mean m_c and its own bulk ESS_c
    (ess_bulk of that chain alone: rank-normalized, which for a Gaussian is the mean's
    ESS). If ESS_c is right, ESS_c (m_c - 1)^2 / 4 are 64 independent chi-square(1)
    draws, so their sum S is chi-square(64). S must lie in the central 99.9% of that law:
    a false failure has probability 1e-3 when the ESS is calibrated (over 40 seeds of this
    set-up on N(0, 1), S/64 ranged over 0.74..1.36 and the chi-square(64) CDF of S was
    uniform, KS p = 0.42); an ESS overstated by a factor 1.7 or more, or understated by a
    factor 0.52 or less, fails with probability one half or more."""
    mu, sigma = 1.0, 2.0

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (((x - mu) / sigma) ** 2).sum()

    result = nuts(
        log_prob,
        torch.zeros(1),
        num_samples=500,
        num_warmup=200,
        chains=CALIBRATION_CHAINS,
        seed=0,
    )
    draws = result.samples[..., 0]  # (chains, draws)
    # one chain per event coordinate: ess_bulk of (1, draws, chains) is each chain's own ESS
    per_chain_ess = ess_bulk(draws.T.unsqueeze(0))
    assert per_chain_ess.shape == (CALIBRATION_CHAINS,)
    statistic = float((per_chain_ess * (draws.mean(dim=1) - mu) ** 2).sum()) / sigma**2
    law = st.chi2(CALIBRATION_CHAINS)
    assert law.ppf(0.0005) < statistic < law.ppf(0.9995), statistic
    # the chains' ESS differ from their draw counts: the test is not of independent draws
    assert float(per_chain_ess.mean()) < 0.8 * draws.shape[1]


# --- eight schools ------------------------------------------------------------------------

SCHOOL_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SCHOOL_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)
MU_SCALE, TAU_SCALE = 5.0, 5.0


def _log_hyperprior(mu: torch.Tensor, log_tau: torch.Tensor) -> torch.Tensor:
    """log p(mu) + log p(log tau) up to constants: mu ~ N(0, 5^2), tau ~ half-Cauchy(0, 5),
    the Jacobian tau of tau = exp(log tau) included."""
    tau = torch.exp(log_tau)
    return -0.5 * (mu / MU_SCALE) ** 2 - torch.log1p((tau / TAU_SCALE) ** 2) + log_tau


def eight_schools_centered(z: torch.Tensor) -> torch.Tensor:
    """log p(y, mu, log tau, theta_1..8), z = (mu, log tau, theta): theta_j ~ N(mu, tau^2),
    y_j ~ N(theta_j, sigma_j^2). Plain torch arithmetic (no distribution objects): the
    same density, evaluated faster."""
    mu, log_tau, theta = z[0], z[1], z[2:]
    tau = torch.exp(log_tau)
    return (
        _log_hyperprior(mu, log_tau)
        - 0.5 * (((theta - mu) / tau) ** 2).sum()
        - theta.numel() * log_tau
        - 0.5 * (((SCHOOL_Y - theta) / SCHOOL_SIGMA) ** 2).sum()
    )


def eight_schools_noncentered(z: torch.Tensor) -> torch.Tensor:
    """log p(y, mu, log tau, eta_1..8), z = (mu, log tau, eta): eta_j ~ N(0, 1),
    theta_j = mu + tau eta_j, y_j ~ N(theta_j, sigma_j^2)."""
    mu, log_tau, eta = z[0], z[1], z[2:]
    theta = mu + torch.exp(log_tau) * eta
    return (
        _log_hyperprior(mu, log_tau)
        - 0.5 * (eta**2).sum()
        - 0.5 * (((SCHOOL_Y - theta) / SCHOOL_SIGMA) ** 2).sum()
    )


def _eight_schools_reference() -> dict[str, float]:
    """E[mu | y], sd(mu | y) and E[log tau | y] by scipy quadrature over h = log tau, from
    the marginal y ~ N(0, diag(sigma^2 + tau^2) + 25 11'): given tau, mu | y is Gaussian
    with precision 1/25 + sum w_j and mean sum w_j y_j / precision, w_j = 1/(sigma_j^2 +
    tau^2)."""
    y, sigma = SCHOOL_Y.numpy(), SCHOOL_SIGMA.numpy()

    def density(h: float) -> float:  # p(y, h) up to a constant
        tau = math.exp(h)
        cov = np.diag(sigma**2 + tau**2) + MU_SCALE**2
        log_marginal = st.multivariate_normal(np.zeros(8), cov).logpdf(y)
        return math.exp(log_marginal - math.log1p((tau / TAU_SCALE) ** 2) + h)

    def conditional(h: float) -> tuple[float, float]:  # mean and variance of mu | y, h
        w = 1.0 / (sigma**2 + math.exp(2 * h))
        precision = 1.0 / MU_SCALE**2 + w.sum()
        return float((w * y).sum() / precision), float(1.0 / precision)

    def integral(f) -> float:
        value, _ = scipy.integrate.quad(
            lambda h: density(h) * f(h), -30.0, 10.0, epsabs=0.0, epsrel=1e-10, limit=200
        )
        return value

    norm = integral(lambda h: 1.0)
    mean_mu = integral(lambda h: conditional(h)[0]) / norm
    second = integral(lambda h: conditional(h)[1] + conditional(h)[0] ** 2) / norm
    mean_log_tau = integral(lambda h: h) / norm
    return {"mu": mean_mu, "sd_mu": math.sqrt(second - mean_mu**2), "log_tau": mean_log_tau}


def test_eight_schools_reference_is_self_consistent():
    """The quadrature reference against a crude independent one: a fine grid over h."""
    reference = _eight_schools_reference()
    grid = np.linspace(-15.0, 8.0, 20001)
    y, sigma = SCHOOL_Y.numpy(), SCHOOL_SIGMA.numpy()
    variances = sigma[None, :] ** 2 + np.exp(2 * grid)[:, None]
    w = 1.0 / variances
    precision = 1.0 / MU_SCALE**2 + w.sum(axis=1)
    # log p(y | h) with mu integrated out, by the Gaussian identity (Sherman-Morrison)
    s_w, s_wy, s_wyy = w.sum(axis=1), (w * y).sum(axis=1), (w * y**2).sum(axis=1)
    quad_form = s_wyy - s_wy**2 / precision
    log_det = np.log(variances).sum(axis=1) + np.log(1.0 + MU_SCALE**2 * s_w)
    log_p = -0.5 * (quad_form + log_det) - np.log1p((np.exp(grid) / TAU_SCALE) ** 2) + grid
    weights = np.exp(log_p - log_p.max())
    weights /= weights.sum()
    assert (weights * s_wy / precision).sum() == pytest.approx(reference["mu"], rel=1e-4)
    assert (weights * grid).sum() == pytest.approx(reference["log_tau"], abs=1e-4)


def test_eight_schools_centered_diverges():
    """The centered parameterization's funnel (theta_j ~ N(mu, tau^2) at small tau) defeats
    a step size adapted to its wide part: default target_accept diverges and warns. Many
    short chains (32 x 30 draws after 100 of warmup, trees capped at depth 5 for time) make
    a run without divergences improbable: 9 to 13 divergent transitions of 960 in each of
    four seeds, against 0 to 2 for the non-centered posterior under the same settings."""
    with pytest.warns(ConvergenceWarning, match=r"\d+ of 960 transitions diverged"):
        result = nuts(
            eight_schools_centered,
            torch.zeros(10),
            num_samples=30,
            num_warmup=100,
            chains=32,
            seed=0,
            max_tree_depth=5,
        )
    assert int(result.divergences.sum()) > 0


def test_eight_schools_noncentered_matches_quadrature():
    """The non-centered parameterization samples without a ConvergenceWarning (pytest turns
    one into an error: no divergence, R-hat <= 1.01, ESS >= 100 per chain), and the
    posterior mean and sd of mu and the mean of log tau agree with scipy quadrature within
    4.5 Monte Carlo standard errors (from the reported ESS; the sd's error by the delta
    method). target_accept = 0.9: at the default 0.8 about one transition in 2000 diverges
    in the non-centered posterior's tails as well. R-hat's 1.01 is near its noise floor at
    4 x 500 draws: over seeds 0 to 6 one run (max R-hat 1.015) would have warned."""
    reference = _eight_schools_reference()
    result = nuts(
        eight_schools_noncentered,
        torch.zeros(10),
        num_samples=500,
        num_warmup=100,
        seed=0,
        target_accept=0.9,
    )
    assert not result.divergences.any()
    mu, log_tau = result.samples[..., :1], result.samples[..., 1:2]
    assert _z(mu.mean(), reference["mu"], mcse_mean(mu)[0]).abs() < 4.5
    assert _z(log_tau.mean(), reference["log_tau"], mcse_mean(log_tau)[0]).abs() < 4.5
    squares = (mu - reference["mu"]) ** 2
    sd = squares.mean().sqrt()
    sd_stderr = mcse_mean(squares)[0] / (2 * sd)
    assert _z(sd, reference["sd_mu"], sd_stderr).abs() < 4.5


# --- Bayesian logistic regression on the Pima data ----------------------------------------


def _pima() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): an intercept and the 7 standardized covariates of the 532 women; y in {0, 1}."""
    data = np.loadtxt(ROOT / "examples" / "data" / "pima_standardized.dat")
    return np.hstack([np.ones((len(data), 1)), data[:, 1:]]), data[:, 0]


def _numpy_importance_moments(
    X: np.ndarray, y: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, ...]:
    """Posterior mean and variance of w under N(0, I) prior and Bernoulli-logit likelihood,
    by self-normalized importance sampling in numpy/scipy alone: a multivariate t_5 proposal
    at scipy's MAP with the inverse of the closed-form Hessian. Returns (mean, its stderr,
    variance, its stderr), the stderrs by the delta method."""

    def neg_log_joint(w: np.ndarray) -> float:
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * w @ w)

    def gradient(w: np.ndarray) -> np.ndarray:
        return X.T @ (scipy.special.expit(X @ w) - y) + w

    mode = scipy.optimize.minimize(
        neg_log_joint, np.zeros(X.shape[1]), jac=gradient, method="BFGS", options={"gtol": 1e-10}
    ).x
    p = scipy.special.expit(X @ mode)
    hessian = (X * (p * (1 - p))[:, None]).T @ X + np.eye(X.shape[1])
    proposal = st.multivariate_t(loc=mode, shape=np.linalg.inv(hessian), df=5)
    draws = proposal.rvs(size=n, random_state=np.random.default_rng(seed))
    z = draws @ X.T
    log_w = -(np.logaddexp(0.0, z) - y * z).sum(axis=1) - 0.5 * (draws**2).sum(axis=1)
    log_w -= proposal.logpdf(draws)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ draws
    mean_se = np.sqrt(((w[:, None] * (draws - mean)) ** 2).sum(axis=0))
    deviations = (draws - mean) ** 2
    variance = w @ deviations
    variance_se = np.sqrt(((w[:, None] * (deviations - variance)) ** 2).sum(axis=0))
    return mean, mean_se, variance, variance_se


def test_pima_logistic_regression_agrees_with_importance_sampling():
    """NUTS's posterior mean and sd of each of the 8 coefficients (prior N(0, 1)) agree with
    (a) probcalc's importance sampling from a Student-t at the Laplace fit (the proposal
    probcalc.evidence(method="mc") uses; evidence itself returns no posterior moments) and
    (b) an importance sampler in numpy/scipy alone, within 4.5 combined standard errors:
    32 z-scores, a false failure has probability below 32 * 6.8e-6 = 2.2e-4."""
    X_np, y_np = _pima()
    X, y = torch.as_tensor(X_np), torch.as_tensor(y_np)

    def log_joint(w: torch.Tensor) -> torch.Tensor:
        # log p(y | w) = sum(y z - softplus(z)) in plain torch: the same value as
        # -pc.core.bernoulli_nll(y, z), which checks y on every call (NUTS 40% slower)
        z = X @ w
        return -0.5 * (w @ w) - (torch.nn.functional.softplus(z) - y * z).sum()

    result = nuts(
        log_joint, torch.zeros(8), num_samples=400, num_warmup=150, seed=0, mass_matrix="dense"
    )
    samples = result.samples
    nuts_mean, nuts_mean_se = samples.mean(dim=(0, 1)), mcse_mean(samples)
    deviations = (samples - nuts_mean) ** 2
    nuts_var, nuts_var_se = deviations.mean(dim=(0, 1)), mcse_mean(deviations)

    fit = pc.laplace.fit(log_joint, torch.zeros(8))
    proposal = MultivariateStudentT(5.0, fit.mode, torch.linalg.cholesky(fit.covariance))
    weighted = pc.mc.importance_sampling(torch.vmap(log_joint), proposal, 20_000, seed=1)
    assert weighted.khat < 0.5
    is_mean = weighted.expectation(lambda w: w)
    is_var = weighted.expectation(lambda w: (w - is_mean.value) ** 2)
    np_mean, np_mean_se, np_var, np_var_se = _numpy_importance_moments(X_np, y_np, 20_000, 2)

    def sd_z(var_a, se_a, var_b, se_b):
        """z of sd_a - sd_b, each sd's error se_var / (2 sd)."""
        sd_a, sd_b = torch.sqrt(var_a), torch.sqrt(var_b)
        return (sd_a - sd_b) / torch.sqrt((se_a / (2 * sd_a)) ** 2 + (se_b / (2 * sd_b)) ** 2)

    references = {
        "probcalc IS": (is_mean.value, is_mean.stderr, is_var.value, is_var.stderr),
        "numpy IS": tuple(torch.as_tensor(a) for a in (np_mean, np_mean_se, np_var, np_var_se)),
    }
    for name, (mean, mean_se, var, var_se) in references.items():
        z_mean = (nuts_mean - mean) / torch.sqrt(nuts_mean_se**2 + mean_se**2)
        z_sd = sd_z(nuts_var, nuts_var_se, var, var_se)
        assert z_mean.abs().max() < 4.5, (name, z_mean)
        assert z_sd.abs().max() < 4.5, (name, z_sd)
    # the errors are small enough to tell the posterior from its Laplace fit: the posterior
    # mean of the glucose coefficient lies 0.18 posterior sds (about 7 of NUTS's standard
    # errors) from the mode
    assert ((nuts_mean - fit.mode) / nuts_mean_se).abs().max() > 4.5
