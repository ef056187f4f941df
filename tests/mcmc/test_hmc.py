"""HMC with every chain in one batch, and the warmup and leapfrog it shares with NUTS."""

import itertools
import math
import warnings

import pytest
import scipy.stats as st
import torch

from probcalc.core.errors import ConvergenceWarning, NonFiniteError
from probcalc.mcmc.diagnostics import mcse_mean
from probcalc.mcmc.hmc import hmc
from probcalc.mcmc.integrator import batched_log_prob, kinetic_energy, leapfrog
from probcalc.mcmc.warmup import DualAveraging, adaptation_windows, estimate_inverse_mass

D = 5


def _gaussian() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    a = torch.randn(D, D, generator=g)
    cov = a @ a.T / D + 0.3 * torch.eye(D)
    mean = torch.linspace(-2.0, 2.0, D)
    return mean, cov


def _log_prob(mean: torch.Tensor, cov: torch.Tensor):
    precision = torch.linalg.inv(cov)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        z = x - mean
        return -0.5 * z @ precision @ z

    return log_prob


def _assert_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Means and every covariance entry within 4.5 Monte Carlo standard errors (from the
    ESS) of the closed form."""
    z_mean = (samples.mean(dim=(0, 1)) - mean) / mcse_mean(samples)
    centred = samples - mean
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # (chains, n, d, d)
    z_cov = (products.mean(dim=(0, 1)) - cov) / mcse_mean(products)
    assert z_mean.abs().max() < 4.5, z_mean
    assert z_cov.abs().max() < 4.5, z_cov


def test_correlated_gaussian_moments_diag():
    mean, cov = _gaussian()
    with warnings.catch_warnings():
        # R-hat's 1.01 is strict for 600 draws a chain; the moments are the test here
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = hmc(
            _log_prob(mean, cov),
            torch.zeros(D),
            num_steps=8,
            num_samples=600,
            num_warmup=400,
            seed=0,
        )
    assert result.rhat.max() < 1.1
    assert result.samples.shape == (4, 600, D)
    assert result.rhat.shape == result.ess_bulk.shape == result.ess_tail.shape == (D,)
    _assert_moments(result.samples, mean, cov)
    # the diagonal metric estimates the marginal variances
    ratio = result.inverse_mass_matrix / cov.diagonal()
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio
    assert result.n_grad_evals >= 4 * 1000 * 8


def test_correlated_gaussian_moments_dense():
    mean, cov = _gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = hmc(
            _log_prob(mean, cov),
            torch.zeros(D),
            num_steps=3,
            num_samples=600,
            num_warmup=400,
            seed=1,
            mass_matrix="dense",
        )
    assert result.rhat.max() < 1.1
    _assert_moments(result.samples, mean, cov)
    assert result.inverse_mass_matrix.shape == (4, D, D)
    error = torch.linalg.matrix_norm(result.inverse_mass_matrix - cov) / torch.linalg.matrix_norm(
        cov
    )
    assert (error < 0.4).all(), error


def test_same_seed_same_draws_bit_for_bit():
    mean, cov = _gaussian()
    f = _log_prob(mean, cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = [
            hmc(f, torch.zeros(D), num_steps=4, num_samples=30, num_warmup=40, seed=s)
            for s in (3, 3, 4)
        ]
        from_generator = [
            hmc(
                f,
                torch.zeros(D),
                num_steps=4,
                num_samples=30,
                num_warmup=40,
                seed=torch.Generator().manual_seed(9),
            )
            for _ in range(2)
        ]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].step_size, runs[1].step_size)
    assert not torch.equal(runs[0].samples, runs[2].samples)
    assert torch.equal(from_generator[0].samples, from_generator[1].samples)


def test_global_random_state_untouched():
    mean, cov = _gaussian()
    before = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hmc(_log_prob(mean, cov), torch.zeros(D), num_steps=2, num_samples=5, num_warmup=5, seed=0)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("shape", [(1,), (3,)])
def test_kernel_leaves_target_invariant(shape):
    """Chains started exactly from the target stay distributed as the target after each
    transition (no warmup): a non-Gaussian target, log of Gamma(2) and Gamma(0.5) draws,
    against scipy's loggamma."""
    a = torch.tensor([2.0, 0.5])

    def log_prob(y: torch.Tensor) -> torch.Tensor:
        return (a * y - torch.exp(y)).sum()

    chains = 4000
    g = torch.Generator().manual_seed(shape[0])
    init = torch.log(torch._standard_gamma(a.expand(chains, 2).contiguous(), generator=g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = hmc(
            log_prob, init, chains=chains, num_steps=shape[0], num_samples=4, num_warmup=0, seed=5
        )
    assert 0.2 < float(result.accept_prob.mean()) < 1.0
    for i in range(2):
        target = st.loggamma(c=float(a[i]))
        for k in (0, 3):
            assert st.kstest(result.samples[:, k, i].numpy(), target.cdf).pvalue > 1e-3


def test_leapfrog_is_reversible_and_second_order():
    cov = torch.diag(torch.tensor([1.0, 4.0]))
    f = batched_log_prob(_log_prob(torch.zeros(2), cov))
    q0 = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    p0 = torch.tensor([[0.3, 0.7], [-1.0, 0.2]])
    inverse_mass = torch.ones(2, 2)
    errors = []
    for eps in (0.1, 0.05):
        step = torch.full((2,), eps)
        value, grad = f(q0)
        q, p = q0, p0
        h0 = -value + kinetic_energy(p0, inverse_mass)
        worst = torch.zeros(2)
        for _ in range(round(1.0 / eps)):
            q, p, value, grad = leapfrog(f, q, p, grad, step, inverse_mass)
            worst = torch.maximum(worst, (-value + kinetic_energy(p, inverse_mass) - h0).abs())
        errors.append(worst)
        back_q, back_p = q, -p
        for _ in range(round(1.0 / eps)):
            back_q, back_p, value, grad = leapfrog(f, back_q, back_p, grad, step, inverse_mass)
        torch.testing.assert_close(back_q, q0, atol=1e-10, rtol=0)
        torch.testing.assert_close(-back_p, p0, atol=1e-10, rtol=0)
    ratio = errors[0] / errors[1]
    assert ((ratio > 3.0) & (ratio < 5.0)).all(), ratio  # energy error O(eps^2)


def test_stan_adaptation_windows():
    assert adaptation_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    # a short warmup: 15% initial, 75% one slow window, 10% terminal
    assert adaptation_windows(100) == [(15, 90)]
    assert adaptation_windows(19) == []
    for n in (20, 150, 151, 500, 2000, 3333):
        windows = adaptation_windows(n)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
        assert windows[-1][1] == n - (50 if n >= 150 else int(0.1 * n))


def test_mass_matrix_regularized_as_stan():
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(2, 40, 3, generator=g)
    n = 40
    var = draws.var(dim=1)
    expected = n / (n + 5) * var + 1e-3 * 5 / (n + 5)
    torch.testing.assert_close(estimate_inverse_mass(draws, dense=False), expected)
    dense = estimate_inverse_mass(draws, dense=True)
    cov0 = torch.cov(draws[0].T)
    torch.testing.assert_close(dense[0], n / (n + 5) * cov0 + 1e-3 * 5 / (n + 5) * torch.eye(3))


def test_dual_averaging_hoffman_gelman_update():
    adapter = DualAveraging(torch.tensor([0.5]), target_accept=0.8)
    eps = adapter.update(torch.tensor([0.3]))
    # t = 1: h = (0.8 - 0.3)/11; log eps = log(5) - h/0.05; eps_bar = eps (weight 1)
    h = 0.5 / 11
    expected = math.log(5.0) - h / 0.05
    torch.testing.assert_close(eps, torch.tensor([math.exp(expected)]))
    torch.testing.assert_close(adapter.final(), torch.tensor([math.exp(expected)]))


def test_step_size_adapts_to_target_accept():
    """A higher target gives a smaller step size and a higher acceptance; the averaged step
    size that sampling uses errs on the side of acceptance (as Stan's does)."""
    mean, cov = _gaussian()
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for target in (0.6, 0.9):
            runs[target] = hmc(
                _log_prob(mean, cov),
                torch.zeros(D),
                num_steps=5,
                num_samples=200,
                num_warmup=300,
                seed=2,
                target_accept=target,
            )
    for target, result in runs.items():
        accept = float(result.accept_prob.mean())
        # sampling uses the averaged step size, whose acceptance runs above the target (as
        # Stan's): seeds 4 and 7 reach target + 0.22 at 0.6
        assert target - 0.05 < accept < target + 0.25, (target, accept)
    assert (runs[0.9].step_size < runs[0.6].step_size).all()
    assert runs[0.9].accept_prob.mean() > runs[0.6].accept_prob.mean()


def test_warns_with_figures_on_too_few_draws():
    mean, cov = _gaussian()
    with pytest.warns(ConvergenceWarning, match=r"bulk ESS \d+ < 100 per chain"):
        hmc(
            _log_prob(mean, cov), torch.zeros(D), num_steps=2, num_samples=10, num_warmup=10, seed=0
        )


def test_outside_support_is_a_rejected_divergence():
    """A half-normal written with -inf below 0: no draw leaves the support, the mean is
    sqrt(2/pi) and the transitions that stepped out count as divergences."""

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[0] > 0, -0.5 * x[0] ** 2, -torch.inf)

    with pytest.warns(ConvergenceWarning, match="diverged"):
        result = hmc(
            log_prob,
            torch.tensor([1.0]),
            num_steps=4,
            num_samples=1500,
            num_warmup=300,
            seed=0,
            target_accept=0.6,
        )
    assert (result.samples > 0).all()
    assert result.divergences.any()
    z = (result.samples.mean() - math.sqrt(2 / math.pi)) / mcse_mean(result.samples)
    assert z.abs().max() < 4.5


def test_float32_draws():
    mean, cov = _gaussian()
    f = _log_prob(mean.float(), cov.float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = hmc(
            f,
            torch.zeros(D, dtype=torch.float32),
            num_steps=3,
            num_samples=20,
            num_warmup=20,
            seed=0,
        )
    assert result.samples.dtype == torch.float32
    assert torch.isfinite(result.samples).all()


def _never_called(x: torch.Tensor) -> torch.Tensor:
    raise AssertionError("log_prob was called before the arguments were checked")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"log_prob": 3.0}, TypeError, "log_prob"),
        ({"init": [0.0, 1.0]}, TypeError, "init"),
        ({"init": torch.zeros(2, dtype=torch.long)}, TypeError, "init"),
        ({"init": torch.zeros(3, 2)}, ValueError, "chains = 4"),
        ({"init": torch.zeros(2, 2, 2)}, ValueError, "init"),
        ({"init": torch.zeros(0)}, ValueError, "init"),
        ({"num_samples": 3}, ValueError, "num_samples"),
        ({"num_samples": 10.0}, TypeError, "num_samples"),
        ({"num_warmup": -1}, ValueError, "num_warmup"),
        ({"chains": 0}, ValueError, "chains"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"num_steps": True}, TypeError, "num_steps"),
        ({"target_accept": 1.0}, ValueError, "target_accept"),
        ({"target_accept": "high"}, ValueError, "target_accept"),
        ({"mass_matrix": "full"}, ValueError, "mass_matrix"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"seed": -1}, ValueError, "seed"),
        ({"progress_bar": "yes"}, TypeError, "progress_bar"),
    ],
)
def test_bad_input_is_named_before_any_work(kwargs, error, match):
    arguments = {"log_prob": _never_called, "init": torch.zeros(2)} | kwargs
    log_prob = arguments.pop("log_prob")
    init = arguments.pop("init")
    with pytest.raises(error, match=match):
        hmc(log_prob, init, **arguments)


def test_non_finite_start_is_refused():
    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[0] > 0, -(x**2).sum(), -torch.inf)

    with pytest.raises(NonFiniteError, match=r"init\[1\]"):
        hmc(log_prob, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), chains=2)

    def nan_gradient(x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x).sum()

    with pytest.raises(NonFiniteError, match="gradient"):
        hmc(nan_gradient, torch.zeros(2))


def test_vector_log_prob_is_refused():
    with pytest.raises(ValueError, match="shape"):
        hmc(lambda x: -0.5 * x**2, torch.zeros(2))


def test_progress_bar_is_shown(capsys):
    mean, cov = _gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hmc(
            _log_prob(mean, cov),
            torch.zeros(D),
            num_steps=2,
            num_samples=5,
            num_warmup=5,
            seed=0,
            progress_bar=True,
        )
    assert "hmc sampling" in capsys.readouterr().err
