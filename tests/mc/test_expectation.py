"""expectation against closed-form moments, with calibrated standard errors."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Beta, Gamma, MultivariateNormal, Normal

import probcalc as pc
from probcalc.core import NonFiniteError

mc = pc.mc


def _mvn5():
    rng = np.random.default_rng(5)
    B = torch.as_tensor(rng.normal(size=(5, 5))) / math.sqrt(5)
    cov = B @ B.T + 0.3 * torch.eye(5)
    mean = torch.as_tensor(rng.normal(size=5))
    a = torch.as_tensor(rng.normal(size=5)) * 0.3
    exact = math.exp(float(a @ mean + 0.5 * a @ cov @ a))
    return MultivariateNormal(mean, cov), (lambda x: torch.exp(x @ a)), exact


CASES = {
    "normal second moment": (Normal(torch.tensor(1.0), torch.tensor(2.0)), lambda x: x**2, 5.0),
    "gamma mean": (Gamma(torch.tensor(3.0), torch.tensor(2.0)), lambda x: x, 1.5),
    "gamma second moment": (Gamma(torch.tensor(3.0), torch.tensor(2.0)), lambda x: x**2, 3.0),
    "beta mean": (Beta(torch.tensor(2.0), torch.tensor(5.0)), lambda x: x, 2 / 7),
    "beta second moment": (
        Beta(torch.tensor(2.0), torch.tensor(5.0)),
        lambda x: x**2,
        2 * 3 / (7 * 8),
    ),
    "exp(a'x) under a 5-D normal": _mvn5(),
}


@pytest.mark.parametrize("name", CASES)
def test_closed_form_moments_within_four_standard_errors_over_20_seeds(name):
    dist, f, exact = CASES[name]
    for seed in range(20):
        estimate = mc.expectation(f, dist, 10_000, seed=seed)
        assert abs(float(estimate.value) - exact) < 4 * float(estimate.stderr), (seed, estimate)


@pytest.mark.parametrize("method", ["mc", "antithetic"])
def test_standard_errors_are_calibrated_over_200_seeds(method):
    """The fraction of |error| < 2 stderr is near 0.954 for a calibrated stderr ("qmc",
    whose stderr is unbiased with several scrambles and conservative with one, has its
    own coverage tests in test_qmc.py)."""
    dist = Normal(torch.tensor(1.0), torch.tensor(2.0))
    exact = 5.0 + math.sin(1.0) * math.exp(-2.0)  # E[x² + sin x]
    hits = 0
    for seed in range(200):
        estimate = mc.expectation(
            lambda x: x**2 + torch.sin(x), dist, 2048, method=method, seed=seed
        )
        hits += abs(float(estimate.value) - exact) < 2 * float(estimate.stderr)
    assert 0.9 <= hits / 200 <= 0.99, hits


def test_qmc_beats_mc_by_ten_and_converges_faster_than_n_to_the_minus_0_8():
    """E[exp(a'x)] under N(0, I_5): RMSE over 8 seeds, n = 2^10 ... 2^14."""
    a = torch.tensor([0.3, -0.2, 0.25, 0.1, -0.15])
    dist = MultivariateNormal(torch.zeros(5), torch.eye(5))
    exact = math.exp(0.5 * float(a @ a))
    f = lambda x: torch.exp(x @ a)  # noqa: E731
    sizes = [2**k for k in range(10, 15)]

    def rmse(method, n):
        errors = [
            float(mc.expectation(f, dist, n, method=method, seed=s).value) - exact for s in range(8)
        ]
        return math.sqrt(np.mean(np.square(errors)))

    qmc_errors = [rmse("qmc", n) for n in sizes]
    assert qmc_errors[-1] <= 0.1 * rmse("mc", sizes[-1])
    slope = np.polyfit(np.log(sizes), np.log(qmc_errors), 1)[0]
    assert slope < -0.8, slope


def test_batches_bound_memory_and_combine_exactly():
    """Evaluated 1,000 at a time, the running mean and variance equal numpy's on all values."""
    dist = Normal(torch.tensor(0.0), torch.tensor(1.0))
    seen = []

    def f(x):
        seen.append(x**2)
        return x**2

    estimate = mc.expectation(f, dist, 100_000, seed=3, batch_size=1000)
    values = torch.cat(seen).numpy()
    assert max(len(v) for v in seen) == 1000 and len(values) == 100_000
    assert float(estimate.value) == pytest.approx(values.mean(), rel=1e-12)
    assert float(estimate.stderr) == pytest.approx(values.std(ddof=1) / math.sqrt(1e5), rel=1e-9)


def test_seeds_reproduce_and_leave_the_global_generator_alone():
    dist = Normal(torch.tensor(0.0), torch.tensor(1.0))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = mc.expectation(torch.sin, dist, 1000, seed=7)
    assert torch.equal(torch.rand(1), before)  # the global stream did not move
    second = mc.expectation(torch.sin, dist, 1000, seed=7)
    assert float(first.value) == float(second.value)
    generator = torch.Generator().manual_seed(1)
    third = mc.expectation(torch.sin, dist, 1000, seed=generator)
    fourth = mc.expectation(torch.sin, dist, 1000, seed=generator)
    assert float(third.value) != float(fourth.value)  # the generator advanced


def test_the_value_is_differentiable_through_reparameterized_draws():
    """d/dμ E[x²] = 2μ and d/dσ = 2σ, exactly for the sample: pathwise through rsample."""
    mu = torch.tensor(0.5, requires_grad=True)
    sigma = torch.tensor(1.5, requires_grad=True)
    estimate = mc.expectation(lambda x: x**2, Normal(mu, sigma), 200_000, seed=0)
    g_mu, g_sigma = torch.autograd.grad(estimate.value, (mu, sigma))
    assert abs(float(g_mu) - 1.0) < 0.05 and abs(float(g_sigma) - 3.0) < 0.05


def test_batched_outputs_and_one_point_functions():
    dist = Normal(torch.zeros(3), torch.ones(3))  # batch_shape (3,): samples (n, 3)
    estimate = mc.expectation(lambda x: x**2, dist, 20_000, seed=1)
    assert estimate.value.shape == (3,)
    assert torch.all((estimate.value - 1).abs() < 4 * estimate.stderr)
    single = mc.expectation(lambda x: x.sum() ** 2, dist, 20_000, seed=1, batched=False)
    assert abs(float(single.value) - 3.0) < 4 * float(single.stderr)


def test_bad_input():
    dist = Normal(torch.tensor(0.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        mc.expectation(torch.sin, dist, 1)
    with pytest.raises(NonFiniteError, match="at the sample"):
        mc.expectation(lambda x: torch.log(x), dist, 100, seed=0)
    with pytest.raises(TypeError, match="Distribution"):
        mc.expectation(torch.sin, "normal", 100)
    with pytest.raises(TypeError, match="inverse CDF"):
        mc.expectation(torch.sin, Gamma(torch.tensor(2.0), torch.tensor(1.0)), 64, method="qmc")
    with pytest.raises(ValueError, match="'mc', 'qmc', 'antithetic'"):
        mc.expectation(torch.sin, dist, 100, method="sobol")
    with pytest.raises(ValueError, match="even"):
        mc.expectation(torch.sin, dist, 101, method="antithetic")
