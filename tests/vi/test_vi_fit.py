"""probcalc.vi.fit: Gaussian variational inference on the pathwise ELBO gradient.

Closed forms: for p = N(mu, Sigma) the full-rank optimum is q = p (ELBO = log Z = 0 for a
normalized p) and the mean-field optimum is N(mu, diag(1 / diag(Sigma^-1))) with
ELBO = -KL(q || p) = -(log det Sigma + sum_i log (Sigma^-1)_ii) / 2.

Tolerances: the fit is stochastic optimization, and its error is a Monte Carlo error. With
the learning rate falling along a cosine over the second half of the run, the final q
averages roughly the gradient draws of the last quarter, N = num_steps * n_samples / 4, so
the mean's error has standard deviation about sqrt(Sigma_ii / N), a covariance entry's about
sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / N) and a mean-field variance's about
var * sqrt(2 / N). The tests allow 5 such standard deviations (over 8 seeds the largest
error seen was 3.9 of them).
"""

import math
import warnings

import pytest
import torch

from probcalc.core.errors import ConvergenceWarning, NonFiniteError
from probcalc.vi.fit import Family, VIResult, fit

MU = torch.tensor([1.0, -2.0, 0.5])
CHOL = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.3, 0.5, 0.4]])
SIGMA = CHOL @ CHOL.T  # correlations up to 0.8
STEPS, DRAWS = 2000, 32
N_EFFECTIVE = STEPS * DRAWS / 4
SIGMAS = 5.0


def _gaussian(mu: torch.Tensor, sigma: torch.Tensor):
    target = torch.distributions.MultivariateNormal(mu, sigma)
    return target.log_prob


def _mean_tolerance(sigma: torch.Tensor) -> torch.Tensor:
    return SIGMAS * (sigma.diagonal() / N_EFFECTIVE).sqrt()


def test_fullrank_optimum_is_the_gaussian_target():
    result = fit(_gaussian(MU, SIGMA), torch.zeros(3), family="fullrank", n_samples=DRAWS, seed=0)
    q = result.distribution
    assert isinstance(result, VIResult)
    assert isinstance(q, torch.distributions.MultivariateNormal)
    assert torch.all((q.mean - MU).abs() <= _mean_tolerance(SIGMA))
    d = SIGMA.diagonal()
    cov_sd = ((d[:, None] * d[None, :] + SIGMA**2) / N_EFFECTIVE).sqrt()
    assert torch.all((q.covariance_matrix - SIGMA).abs() <= SIGMAS * cov_sd)
    # ELBO = log Z - KL(q || p) = 0 at q = p; at the start, KL(N(0, 0.01 I) || p) is about 12
    assert abs(float(result.elbo[-STEPS // 10 :].mean())) < 0.1
    assert float(result.khat) < 0.5
    assert result.converged
    assert "k-hat" in result.message
    assert result.elbo.shape == (STEPS,)
    assert torch.isfinite(result.elbo).all()
    assert result.n_grad_evals == 1 + STEPS * DRAWS
    assert result.n_evals == 2 + STEPS * DRAWS + 4000


def test_meanfield_optimum_matches_the_precision_diagonal():
    chol = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.9, 0.0], [0.0, 0.4, 1.2]])
    sigma = chol @ chol.T
    mu = torch.tensor([-1.0, 0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a good fit gives no warning
        result = fit(_gaussian(mu, sigma), [0, 0, 0], n_samples=DRAWS, seed=1)
    q = result.distribution
    assert isinstance(q, torch.distributions.Independent)
    precision_diagonal = torch.linalg.inv(sigma).diagonal()
    variance = 1.0 / precision_diagonal
    assert torch.all((q.mean - mu).abs() <= _mean_tolerance(sigma))
    assert torch.all(
        (q.variance - variance).abs() <= SIGMAS * variance * math.sqrt(2 / N_EFFECTIVE)
    )
    kl = 0.5 * (torch.logdet(sigma) + precision_diagonal.log().sum())
    assert float(result.elbo[-STEPS // 10 :].mean()) == pytest.approx(-float(kl), abs=0.1)
    # q is narrower than p along the correlated directions, so p/q has a tail: k-hat can
    # pass 0.5 here, but stays below 0.7 (no warning above)
    assert result.converged


def _student_t(z: torch.Tensor) -> torch.Tensor:
    return torch.distributions.StudentT(2.0).log_prob(z).sum()


def _log_gamma(u: torch.Tensor) -> torch.Tensor:
    # u = log x with x ~ Gamma(1.5, 1): density x^1.5 e^-x in u, a long left tail
    return (1.5 * u - u.exp()).sum()


@pytest.mark.parametrize("log_prob", [_student_t, _log_gamma], ids=["student-t-2", "log-gamma"])
def test_khat_flags_heavy_or_skewed_targets(log_prob):
    with pytest.warns(ConvergenceWarning, match=r"k-hat = \d") as caught:
        result = fit(log_prob, torch.zeros(1), num_steps=500, seed=0)
    assert float(result.khat) > 0.7
    assert not result.converged
    assert f"{float(result.khat):.3g}" in str(caught[0].message)
    assert caught[0].filename == __file__  # the warning points at the caller


@pytest.mark.filterwarnings("ignore::probcalc.core.errors.ConvergenceWarning")  # short runs
def test_the_same_seed_gives_the_same_fit():
    log_prob = _gaussian(MU, SIGMA)
    state = torch.get_rng_state()
    first = fit(log_prob, torch.zeros(3), family="fullrank", num_steps=50, seed=7)
    second = fit(log_prob, torch.zeros(3), family="fullrank", num_steps=50, seed=7)
    other = fit(log_prob, torch.zeros(3), family="fullrank", num_steps=50, seed=8)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    assert torch.equal(first.elbo, second.elbo)
    assert torch.equal(first.distribution.scale_tril, second.distribution.scale_tril)
    assert torch.equal(first.khat, second.khat)
    assert not torch.equal(first.elbo, other.elbo)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    by_gen = fit(log_prob, torch.zeros(3), num_steps=20, seed=gen_a)
    assert torch.equal(by_gen.elbo, fit(log_prob, torch.zeros(3), num_steps=20, seed=gen_b).elbo)


def test_float32_init_gives_a_float32_fit():
    result = fit(
        lambda z: -0.5 * ((z - 3.0) ** 2).sum(), torch.zeros(2, dtype=torch.float32), seed=0
    )
    assert result.distribution.mean.dtype == torch.float32
    assert result.elbo.dtype == torch.float32
    # 5 standard deviations of the mean's Monte Carlo error, sqrt(1 / N), N = 2000 * 16 / 4
    torch.testing.assert_close(
        result.distribution.mean, torch.full((2,), 3.0), atol=0.056, rtol=0, check_dtype=False
    )


class _Counting:
    """A standard-normal log density that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, z):
        self.calls += 1
        return -0.5 * (z**2).sum()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"init": torch.zeros(2, 2)}, ValueError, r"init must have shape \(d,\).*\(2, 2\)"),
        ({"init": torch.tensor(0.0)}, ValueError, r"init must have shape \(d,\).*\(\)"),
        ({"init": torch.zeros(0)}, ValueError, r"init must have shape \(d,\).*\(0,\)"),
        ({"init": torch.tensor([0.0, math.nan])}, ValueError, "init must be finite"),
        ({"init": "ab"}, TypeError, "init must be"),
        ({"init": torch.zeros(2, dtype=torch.complex128)}, TypeError, "init must be real"),
        ({"family": "diagonal"}, ValueError, r"family 'diagonal'.*'meanfield', 'fullrank'"),
        ({"num_steps": 0}, ValueError, "num_steps must be an integer >= 1, got 0"),
        ({"num_steps": 2.5}, ValueError, "num_steps must be an integer"),
        ({"num_steps": "10"}, TypeError, "num_steps must be an integer"),
        ({"n_samples": 1}, ValueError, "n_samples must be an integer >= 2, got 1"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be positive"),
        ({"learning_rate": math.inf}, ValueError, "learning_rate must be positive"),
        ({"learning_rate": None}, TypeError, "learning_rate must be a positive number"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"progress_bar": 1}, TypeError, "progress_bar must be True or False"),
    ],
)
def test_bad_arguments_are_refused_before_log_prob_runs(kwargs, error, match):
    log_prob = _Counting()
    arguments = {"init": torch.zeros(2), **kwargs}
    with pytest.raises(error, match=match):
        fit(log_prob, **arguments)
    assert log_prob.calls == 0


@pytest.mark.parametrize(
    ("log_prob", "error", "match"),
    [
        (lambda z: -0.5 * z**2, ValueError, r"one number per point.*shape \(2,\)"),
        (lambda z: 1.0, TypeError, "log_prob must return a 0-d tensor"),
        (lambda z: z.sum() + math.inf, NonFiniteError, r"log_prob is inf at init"),
        (lambda z: z.sum() * math.nan, NonFiniteError, r"log_prob is nan at init"),
        (lambda z: -z.abs().sqrt().sum(), NonFiniteError, "gradient of log_prob at init"),
        (lambda z: z.sum() + float(z[0]), TypeError, r"torch\.func\.vmap"),
        ("not a function", TypeError, "log_prob must be a function"),
    ],
    ids=["vector", "float", "inf", "nan", "inf-gradient", "no-vmap", "not-callable"],
)
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # float(z[0])
def test_bad_log_prob_is_refused_at_init(log_prob, error, match):
    with pytest.raises(error, match=match):
        fit(log_prob, torch.zeros(2), num_steps=5, seed=0)


@pytest.mark.filterwarnings("ignore::probcalc.core.errors.ConvergenceWarning")  # a short run
def test_family_enum_and_progress_bar(capsys):
    result = fit(
        _gaussian(MU, SIGMA), MU, family=Family.FULLRANK, num_steps=10, seed=0, progress_bar=True
    )
    assert isinstance(result.distribution, torch.distributions.MultivariateNormal)
    assert "ELBO" in capsys.readouterr().err


def test_a_non_finite_draw_during_the_fit_is_reported():
    # log z is finite at init = 0.3 but NaN at the negative draws q soon makes
    with pytest.raises(
        NonFiniteError,
        match=r"log_prob is nan at the draw z = -?[\d.e-]+ from q at step \d+ of 500",
    ):
        fit(lambda z: z.log().sum(), torch.tensor([0.3]), num_steps=500, seed=0)
