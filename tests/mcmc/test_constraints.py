"""Constrained parameters, warm starts from a Laplace fit, the vmap fallback and the progress
bar of probcalc.mcmc's samplers, against closed forms."""

import math
import warnings

import pytest
import scipy.stats as st
import torch
from torch.distributions import Beta, Dirichlet, Gamma, MultivariateNormal, Normal, constraints

import probcalc as pc
from probcalc.core.errors import NonFiniteError
from probcalc.mcmc import VmapFallbackWarning, hmc, nuts, ordered_vector
from probcalc.mcmc.diagnostics import mcse_mean
from probcalc.mcmc.integrator import batched_log_prob
from probcalc.mcmc.support import OrderedTransform, change_of_variables
from probcalc.mcmc.target import looped_log_prob

K = 4.5  # tolerance in Monte Carlo standard errors (from each coordinate's ESS)


def _assert_mean(samples: torch.Tensor, expected: torch.Tensor) -> None:
    z = (samples.mean(dim=(0, 1)) - expected) / mcse_mean(samples)
    assert z.abs().max() < K, z


def _assert_variance(samples: torch.Tensor, expected: torch.Tensor) -> None:
    centred_sq = (samples - samples.mean(dim=(0, 1))) ** 2
    z = (centred_sq.mean(dim=(0, 1)) - expected) / mcse_mean(centred_sq)
    assert z.abs().max() < K, z


def _run(log_prob, init, **options):
    settings = {"num_warmup": 300, "num_samples": 500, "seed": 0}
    settings.update(options)
    return nuts(log_prob, init, **settings)


# One run samples a block of every support (one chain program of d = 12); the tests below
# check each block against its closed form. Independent blocks: the joint density is the
# product, so each block's marginal is its own distribution.
GAMMA_A, GAMMA_B = torch.tensor([3.0, 0.7], dtype=torch.float64), torch.tensor([2.0, 1.0])
ALPHA = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
SUPPORTS = [
    None,  # N(1, 2^2)
    (constraints.positive, 2),  # Gamma(3, 2), Gamma(0.7, 1)
    "unit",  # Beta(2, 5)
    constraints.interval(-1.0, 3.0),  # flat on (-1, 3)
    (constraints.simplex, 3),  # Dirichlet(1, 2, 3)
    (ordered_vector, 3),  # three iid N(0, 1), ordered
]


def _every_support(x):
    return (
        Normal(1.0, 2.0).log_prob(x[0])
        + Gamma(GAMMA_A, GAMMA_B.to(x.dtype)).log_prob(x[1:3]).sum()
        + Beta(2.0, 5.0).log_prob(x[3])
        + 0.0 * x[4]
        + Dirichlet(ALPHA).log_prob(x[5:8])
        + Normal(0.0, 1.0).log_prob(x[8:11]).sum()
    )


@pytest.fixture(scope="module")
def every_support():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        init = torch.tensor([0.0, 1.0, 1.0, 0.5, 0.0, 0.2, 0.3, 0.5, -1.0, 0.0, 1.0])
        with warnings.catch_warnings():
            # R-hat's 1.01 is at its noise floor for 4 x 300 draws of 11 coordinates (1.016
            # seen on portable kernels): test_every_sample_lies_in_its_support bounds it at
            # 1.05, and the moments are tested against their ESS-based standard errors
            warnings.simplefilter("ignore", pc.ConvergenceWarning)
            return _run(_every_support, init, constraints=SUPPORTS, num_warmup=150, num_samples=300)
    finally:
        torch.set_default_dtype(previous)


def test_every_sample_lies_in_its_support(every_support):
    x = every_support.samples
    assert x.shape == (4, 300, 11)
    assert float(every_support.rhat.max()) < 1.05
    assert not every_support.divergences.any()
    assert float(every_support.ess_bulk.min()) > 400
    assert every_support.inverse_mass_matrix.shape == (4, 10)  # the simplex: 2 free coordinates
    assert bool((x[..., 1:3] > 0).all())
    assert bool(((x[..., 3] > 0) & (x[..., 3] < 1)).all())
    assert bool(((x[..., 4] > -1) & (x[..., 4] < 3)).all())
    assert torch.allclose(x[..., 5:8].sum(-1), torch.ones(()), atol=1e-12)
    assert bool((x[..., 5:8] > 0).all())
    assert bool((x[..., 9:11] > x[..., 8:10]).all())


def test_positive_unit_interval_and_simplex_moments(every_support):
    x = every_support.samples[..., :8]
    a0 = ALPHA.sum()
    mean = torch.cat(
        [torch.tensor([1.0]), GAMMA_A / GAMMA_B, torch.tensor([2 / 7, 1.0]), ALPHA / a0]
    )
    variance = torch.cat(
        [
            torch.tensor([4.0]),
            GAMMA_A / GAMMA_B**2,
            torch.tensor([10 / 392, 16 / 12]),
            ALPHA * (a0 - ALPHA) / (a0**2 * (a0 + 1)),
        ]
    )
    _assert_mean(x, mean)
    _assert_variance(x, variance)


def test_ordered_block_gives_normal_order_statistics(every_support):
    # Three iid N(0, 1) restricted to x0 < x1 < x2 are their order statistics: the largest
    # has mean 3 / (2 sqrt(pi)) (closed form), the middle one 0.
    top = 3.0 / (2.0 * math.sqrt(math.pi))
    x = every_support.samples[..., 8:11]
    _assert_mean(x, torch.tensor([-top, 0.0, top]))
    # the middle order statistic's distribution against its density (n = 3, k = 2)
    middle = x[..., 1].flatten().numpy()
    thinned = middle[:: max(1, int(middle.size / float(every_support.ess_bulk[9])))]

    def cdf(v):
        p = st.norm.cdf(v)
        return 3 * p**2 - 2 * p**3

    assert st.kstest(thinned, cdf).pvalue > 1e-3


def test_log_prob_includes_the_log_jacobian(every_support):
    # the chains' log density is log p(x) + log|det dx/dz| (Stan's lp__): for x = exp(z),
    # log x; for the unit interval, log x(1 - x); for (a, b), log((x - a)(b - x)/(b - a));
    # for the ordered block, log of the gaps; the simplex's from torch.func's Jacobian.
    x = every_support.samples
    space = change_of_variables(SUPPORTS, 11)
    z = space.to_unconstrained(x)
    flat_z = z.reshape(-1, 10)
    simplex_jacobian = torch.vmap(torch.func.jacrev(space.to_constrained))(flat_z)[:, 5:7, 5:7]
    simplex_term = torch.linalg.slogdet(simplex_jacobian).logabsdet.reshape(x.shape[:2])
    log_jacobian = (
        torch.log(x[..., 1:3]).sum(-1)
        + torch.log(x[..., 3] * (1 - x[..., 3]))
        + torch.log((x[..., 4] + 1) * (3 - x[..., 4]) / 4)
        + simplex_term
        + torch.log(x[..., 9:11] - x[..., 8:10]).sum(-1)
    )
    numpy_x = x.numpy()
    log_p = (
        st.norm(1.0, 2.0).logpdf(numpy_x[..., 0])
        + st.gamma(3.0, scale=0.5).logpdf(numpy_x[..., 1])
        + st.gamma(0.7).logpdf(numpy_x[..., 2])
        + st.beta(2.0, 5.0).logpdf(numpy_x[..., 3])
        + st.dirichlet(ALPHA.numpy())
        .logpdf(numpy_x[..., 5:8].reshape(-1, 3).T)
        .reshape(numpy_x.shape[:2])
        + st.norm.logpdf(numpy_x[..., 8:11]).sum(-1)
    )
    expected = torch.as_tensor(log_p) + log_jacobian
    assert torch.allclose(every_support.log_prob, expected, rtol=1e-9, atol=1e-9)


def test_hmc_takes_constraints_too():
    result = hmc(
        lambda x: Gamma(4.0, 2.0).log_prob(x).sum(),
        torch.ones(1),
        constraints="positive",
        num_warmup=300,
        num_samples=500,
        seed=0,
    )
    _assert_mean(result.samples, torch.tensor([2.0]))


def test_change_of_variables_round_trip_and_jacobian_by_finite_differences():
    space = change_of_variables(
        [constraints.positive, (constraints.simplex, 3), (ordered_vector, 3), "unit"], 8
    )
    assert space.dim_unconstrained == 7
    z = torch.randn(7, generator=torch.Generator().manual_seed(3))
    x = space.to_constrained(z)
    assert torch.allclose(space.to_unconstrained(x), z, atol=1e-12)
    # log|det dx/dz| block by block from torch.func's Jacobian (8, 7): the simplex's density
    # is that of its first k - 1 coordinates, as torch's Dirichlet's
    jac = torch.func.jacrev(space.to_constrained)(z)
    expected = (
        torch.log(jac[0, 0].abs())
        + torch.linalg.slogdet(jac[1:3, 1:3]).logabsdet
        + torch.linalg.slogdet(jac[4:7, 3:6]).logabsdet
        + torch.log(jac[7, 6].abs())
    )
    assert torch.allclose(space.log_abs_det_jacobian(z), expected, atol=1e-10)


def test_ordered_transform_is_a_torch_transform():
    t = OrderedTransform()
    z = torch.tensor([0.3, -1.0, 2.0])
    x = t(z)
    assert bool((x[1:] > x[:-1]).all())
    assert torch.allclose(t.inv(x), z)
    jac = torch.func.jacrev(t)(z)
    assert torch.allclose(t.log_abs_det_jacobian(z, x), torch.linalg.slogdet(jac).logabsdet)
    assert isinstance(torch.distributions.biject_to(ordered_vector), OrderedTransform)


@pytest.mark.parametrize(
    ("spec", "init", "error", "match"),
    [
        ("positive", torch.tensor([1.0, -2.0]), ValueError, r"init\[0\].*outside.*GreaterThan"),
        ("positive", torch.tensor([1.0, 0.0]), ValueError, "outside"),
        (constraints.simplex, torch.tensor([0.0, 1.0]), ValueError, "boundary"),
        ("unit", torch.tensor([0.5, 1.0]), ValueError, "boundary"),
        ("unit", torch.tensor([0.0, 0.5]), ValueError, "boundary"),
        (constraints.interval(0.0, 2.0), torch.tensor([1.0, 2.0]), ValueError, "boundary"),
        (constraints.half_open_interval(0.0, 1.0), torch.zeros(2), ValueError, "boundary"),
        (
            constraints.stack([constraints.positive, constraints.real], -1),
            torch.ones(2),
            ValueError,
            "as a sequence",
        ),
        (
            [constraints.interval(torch.zeros(2), torch.ones(2)), "real"],
            torch.ones(2) / 2,
            ValueError,
            "not to its block of 1",
        ),
        (constraints.simplex, torch.tensor([0.5, 0.6]), ValueError, "outside"),
        ("ordered", torch.tensor([1.0, 1.0]), ValueError, "outside"),
        ("sphere", torch.ones(2), ValueError, "unknown support 'sphere'"),
        (["positive"], torch.ones(2), ValueError, "name 1 coordinates but the points have d = 2"),
        ([("positive", 0), "real"], torch.ones(2), ValueError, "size >= 1"),
        (constraints.nonnegative_integer, torch.ones(2), ValueError, "discrete"),
        (constraints.lower_cholesky, torch.ones(2), ValueError, "biject_to has no bijection"),
        (3, torch.ones(2), TypeError, "constraints must be None"),
        ([1.5, "real"], torch.ones(2), TypeError, r"constraints\[0\]"),
        ([(constraints.simplex, 1), "real"], torch.ones(2), ValueError, "nothing to sample"),
    ],
)
def test_bad_constraints_are_named_before_work(spec, init, error, match):
    calls = []

    def log_prob(x):
        calls.append(1)
        return -(x**2).sum()

    with pytest.raises(error, match=match):
        nuts(log_prob, init, constraints=spec, num_warmup=10, num_samples=10)
    assert not calls


def test_a_start_that_fails_in_a_later_chain_is_named():
    init = torch.tensor([[1.0], [2.0], [-1.0], [3.0]])
    with pytest.raises(ValueError, match=r"init\[2\]"):
        nuts(lambda x: Gamma(2.0, 1.0).log_prob(x).sum(), init, constraints="positive")


# --- warm starts from a Laplace fit ----------------------------------------------------------


def _correlated_gaussian():
    cov = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.3], [0.0, 0.3, 4.0]])
    mean = torch.tensor([1.0, -2.0, 0.5])
    return mean, cov, MultivariateNormal(mean, cov).log_prob


@pytest.mark.parametrize(("mass_matrix", "num_warmup"), [("diag", 0), ("dense", 0), ("dense", 60)])
def test_laplace_start_gives_the_first_metric(mass_matrix, num_warmup):
    _, cov, log_prob = _correlated_gaussian()
    fit = pc.laplace.fit(log_prob, torch.zeros(3))
    # the metric is the fit's, which for a Gaussian is the target's covariance, with no
    # warmup (the step size 1 is then too long for the diagonal metric: divergences are
    # expected) and through a warmup shorter than Stan's 150 iterations (step size only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)
        result = nuts(
            log_prob, fit, num_warmup=num_warmup, num_samples=10, seed=0, mass_matrix=mass_matrix
        )
    expected = cov if mass_matrix == "dense" else torch.diagonal(cov)
    for chain in range(4):
        assert torch.allclose(result.inverse_mass_matrix[chain], expected, rtol=1e-8)


def test_laplace_start_draws_start_the_chains_in_the_typical_set():
    mean, cov, log_prob = _correlated_gaussian()
    fit = pc.laplace.fit(log_prob, torch.zeros(3))
    chains = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)  # 4 draws per chain
        result = hmc(
            log_prob,
            fit,
            chains=chains,
            num_warmup=0,
            num_samples=4,
            num_steps=1,
            seed=1,
            mass_matrix="dense",
        )
    # one short step from exact draws leaves them exact: the first draws' covariance
    first = result.samples[:, 0]
    standard = torch.linalg.solve_triangular(
        torch.linalg.cholesky(cov), (first - mean).T, upper=False
    ).T
    for coordinate in range(3):
        assert st.kstest(standard[:, coordinate].numpy(), "norm").pvalue > 1e-3


def test_laplace_start_with_short_warmup_samples_correctly():
    mean, cov, log_prob = _correlated_gaussian()
    fit = pc.laplace.fit(log_prob, torch.zeros(3))
    result = nuts(log_prob, fit, num_warmup=50, num_samples=500, seed=2, mass_matrix="dense")
    _assert_mean(result.samples, mean)
    _assert_variance(result.samples, torch.diagonal(cov))


def test_constrained_laplace_fit_lends_its_supports():
    def log_prob(x):
        return Gamma(3.0, 2.0).log_prob(x[0]) + Beta(2.0, 3.0).log_prob(x[1])

    fit = pc.laplace.fit(log_prob, torch.tensor([1.0, 0.5]), constraints=["positive", "unit"])
    result = nuts(log_prob, fit, num_warmup=100, num_samples=500, seed=0)
    assert bool((result.samples[..., 0] > 0).all())
    assert bool(((result.samples[..., 1] > 0) & (result.samples[..., 1] < 1)).all())
    _assert_mean(result.samples, torch.tensor([1.5, 0.4]))
    with pytest.raises(ValueError, match="not to both"):
        nuts(log_prob, fit, constraints=["positive", "unit"])


def test_identity_laplace_fit_with_constraints_is_refused():
    fit = pc.laplace.fit(lambda x: -0.5 * ((x - 2.0) ** 2).sum(), torch.ones(2))
    with pytest.raises(ValueError, match="identity scale"):
        nuts(lambda x: Gamma(2.0, 1.0).log_prob(x).sum(), fit, constraints="positive")


# --- vmap fallback ---------------------------------------------------------------------------


def _not_vmappable(x):
    # Python control flow on a value: vmap cannot batch it
    if float(x[0]) > 100.0:
        return torch.tensor(-math.inf)
    return -0.5 * ((x - 1.0) ** 2).sum()


def test_a_log_prob_vmap_cannot_run_falls_back_to_a_loop():
    with pytest.warns(VmapFallbackWarning, match="one chain at a time"):
        result = _run(_not_vmappable, torch.zeros(2))
    _assert_mean(result.samples, torch.ones(2))
    _assert_variance(result.samples, torch.ones(2))


def test_looped_potential_equals_the_batched_one():
    def log_prob(x):
        return Normal(x[0], 1.0 + x[1] ** 2).log_prob(torch.tensor(0.3)) - x.pow(4).sum()

    q = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    q[2, 0] = math.nan
    batched = batched_log_prob(log_prob)(q)
    looped = looped_log_prob(log_prob)(q)
    for a, b in zip(batched, looped, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=False) or torch.equal(a, b)
    assert batched[0][2] == -math.inf and bool((looped[1][2] == 0).all())


def test_an_error_of_the_function_itself_is_raised_not_hidden():
    def broken(x):
        raise KeyError("a bug in the model")

    with pytest.raises(KeyError, match="a bug in the model"), warnings.catch_warnings():
        warnings.simplefilter("error", VmapFallbackWarning)
        _run(broken, torch.zeros(2))


def test_a_non_finite_start_still_names_the_chain_with_constraints():
    def log_prob(x):
        return torch.where(x[0] > 2.0, torch.tensor(math.nan), -x.sum())

    with pytest.raises(NonFiniteError, match=r"init\[1\]"):
        nuts(log_prob, torch.tensor([[1.0], [3.0]]), chains=2, constraints="positive")


# --- progress bar ----------------------------------------------------------------------------


def test_progress_bar_shows_phase_step_size_and_divergences(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)  # 30 draws: too few to converge
        _run(
            lambda x: -0.5 * (x**2).sum(),
            torch.zeros(2),
            num_warmup=30,
            num_samples=30,
            progress_bar=True,
        )
    err = capsys.readouterr().err
    assert "nuts warmup" in err and "nuts sampling" in err
    assert "step_size=" in err and "divergences=" in err and "accept=" in err


def test_a_dense_window_shorter_than_twice_the_dimension_estimates_variances_only():
    from probcalc.mcmc.warmup import estimate_inverse_mass

    draws = torch.randn(2, 30, 20, generator=torch.Generator().manual_seed(0))
    short = estimate_inverse_mass(draws, dense=True)  # 30 < 40 draws
    diagonal = estimate_inverse_mass(draws, dense=False)
    assert torch.equal(short, torch.diag_embed(diagonal))
    longer = torch.randn(2, 60, 20, generator=torch.Generator().manual_seed(1))
    full = estimate_inverse_mass(longer, dense=True)
    expected = torch.stack([torch.cov(chain.T) for chain in longer]) * 60 / 65
    expected = expected + 1e-3 * 5 / 65 * torch.eye(20)
    torch.testing.assert_close(full, expected, rtol=1e-12, atol=1e-12)


def test_n_grad_evals_counts_the_runs_evaluations_only():
    # no warmup: one evaluation of every chain at the start, then num_steps per draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)  # 10 draws
        result = hmc(
            lambda x: -0.5 * (x**2).sum(),
            torch.zeros(3),
            chains=2,
            num_steps=5,
            num_warmup=0,
            num_samples=10,
            seed=0,
        )
    assert result.n_grad_evals == 2 * (1 + 5 * 10)


def test_a_given_dense_metric_survives_windows_shorter_than_twice_the_dimension():
    # d = 30, 150 warmup iterations: Stan's windows of 25 and 50 draws are under 2d = 60, so
    # the Laplace fit's covariance (the target's, for a Gaussian) is the metric after warmup
    d = 30
    g = torch.Generator().manual_seed(5)
    a = torch.randn(d, d, generator=g)
    cov = a @ a.T / d + 0.5 * torch.eye(d)
    target = MultivariateNormal(torch.zeros(d), cov)
    fit = pc.laplace.fit(target.log_prob, torch.ones(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)
        result = nuts(
            target.log_prob,
            fit,
            num_warmup=150,
            num_samples=10,
            chains=2,
            seed=0,
            mass_matrix="dense",
        )
    for chain in range(2):
        torch.testing.assert_close(result.inverse_mass_matrix[chain], cov, rtol=1e-8, atol=1e-8)


def test_warnings_point_at_the_callers_line():
    with pytest.warns(VmapFallbackWarning) as caught:
        _run(_not_vmappable, torch.zeros(2), num_warmup=50, num_samples=200)
    assert all(w.filename == __file__ for w in caught if w.category is VmapFallbackWarning)
    with pytest.warns(pc.ConvergenceWarning) as caught:
        nuts(lambda x: -0.5 * (x**2).sum(), torch.zeros(1), num_warmup=5, num_samples=5, seed=0)
    assert caught[0].filename == __file__


def test_bounds_of_another_dtype_leave_the_draws_in_the_starts_dtype():
    bounds = constraints.interval(torch.tensor(-1.0, dtype=torch.float64), 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)
        result = nuts(
            lambda x: -(x**2).sum(),
            torch.zeros(2, dtype=torch.float32),
            constraints=bounds,
            num_warmup=10,
            num_samples=10,
            seed=0,
        )
    assert result.samples.dtype == result.log_prob.dtype == torch.float32
