"""cubature on the Genz families (closed forms), infinite boxes, log_integral and
expect_normal against closed forms."""

import math

import numpy as np
import pytest
import torch
from genz import FAMILIES, make_family

import probcalc as pc
from probcalc.core import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError
from probcalc.integrate import cubature, expect_normal, log_integral

INF = math.inf


def _check(family, rtol, rule="adaptive", max_evals=50_000_000):
    d = family.d
    result = cubature(family, [0.0] * d, [1.0] * d, rtol=rtol, rule=rule, max_evals=max_evals)
    exact = family.exact()
    true_error = abs(float(result.value) - exact)
    assert result.converged, result.message
    assert true_error <= rtol * abs(exact), (family.name, d, true_error / abs(exact))
    assert true_error <= float(result.error), "the reported error must bound the true error"


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_genz_families_up_to_three_dimensions(name, d):
    family = make_family(name, d, seed=1)
    _check(family, rtol=1e-10 if family.smooth else 1e-6)


@pytest.mark.parametrize("name", ["oscillatory", "product_peak", "corner_peak", "gaussian"])
def test_smooth_genz_families_in_five_dimensions(name):
    _check(make_family(name, 5, seed=1), rtol=1e-8)


@pytest.mark.parametrize(
    ("name", "rule"),
    [("oscillatory", "gauss-legendre"), ("corner_peak", "gauss-legendre"), ("gaussian", "sparse")],
)
def test_smooth_genz_families_in_five_dimensions_by_the_fixed_rules(name, rule):
    _check(make_family(name, 5, seed=1), rtol=1e-8, rule=rule)


@pytest.mark.parametrize("rule", ["adaptive", "gauss-legendre"])
def test_gaussian_over_the_whole_plane_and_a_half_plane(rule):
    """∫∫ exp(-x'Ax/2) = 2π / sqrt(det A); over x_1 >= 0 (by symmetry): half of it."""
    A = torch.tensor([[2.0, 0.6], [0.6, 1.0]])

    def f(x):
        return torch.exp(-0.5 * ((x @ A) * x).sum(1))

    exact = 2 * math.pi / math.sqrt(float(torch.linalg.det(A)))
    whole = cubature(f, [-INF, -INF], [INF, INF], rtol=1e-9, rule=rule)
    half = cubature(f, [0.0, -INF], [INF, INF], rtol=1e-9, rule=rule)
    assert float(whole.value) == pytest.approx(exact, rel=1e-9)
    assert float(half.value) == pytest.approx(exact / 2, rel=1e-9)


def test_qmc_in_eight_dimensions_is_within_four_standard_errors():
    """∫_[0,1]^8 ∏ (1 + (x_i - ½)/2) ... = 1 exactly; QMC's error is a standard error."""
    f = lambda x: torch.prod(1 + 0.5 * torch.sin(2 * math.pi * x) + 0.3 * (x - 0.5), 1)  # noqa: E731
    result = cubature(f, [0.0] * 8, [1.0] * 8, rtol=1e-4, rule="qmc", seed=3)
    assert result.converged
    assert abs(float(result.value) - 1.0) < 4 * float(result.error)


def test_sparse_grid_integrates_a_smooth_12_dimensional_function():
    """∫_[0,1]^12 exp(Σ x_i / 12) = (12 (e^(1/12) - 1))^12."""
    result = cubature(
        lambda x: torch.exp(x.sum(1) / 12), [0.0] * 12, [1.0] * 12, rtol=1e-8, rule="sparse"
    )
    exact = (12 * math.expm1(1 / 12)) ** 12
    assert float(result.value) == pytest.approx(exact, rel=1e-8)


def test_cubature_gradient_matches_the_closed_form():
    """d/dc ∫_[0,1]^2 exp(c (x + y)) = 2 ((e^c - 1)/c) (e^c (c - 1) + 1)/c²."""
    c = torch.tensor(0.7, requires_grad=True)
    result = cubature(lambda x: torch.exp(c * x.sum(1)), [0.0, 0.0], [1.0, 1.0], rtol=1e-10)
    (grad,) = torch.autograd.grad(result.value, c)
    one = math.expm1(0.7) / 0.7
    d_one = (math.exp(0.7) * (0.7 - 1) + 1) / 0.7**2
    assert float(grad) == pytest.approx(2 * one * d_one, rel=1e-9)


def test_cubature_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        cubature(lambda x: x.sum(1), [0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="rule='sparse'"):
        cubature(lambda x: x.sum(1), [0.0] * 7, [1.0] * 7)
    with pytest.raises(ValueError, match="'adaptive', 'gauss-legendre', 'sparse', 'qmc'"):
        cubature(lambda x: x.sum(1), [0.0], [1.0], rule="simpson")
    with pytest.raises(ValueError, match=r"shape \(n,\) or|points to a tensor"):
        cubature(lambda x: x.sum(), [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(NonFiniteError, match="at the node"):
        cubature(lambda x: 1 / (x[:, 0] - x[:, 0]), [0.0, 0.0], [1.0, 1.0])
    with pytest.warns(ConvergenceWarning, match="max_evals"):
        result = cubature(
            lambda x: (x - 0.3).abs().sum(1), [0.0] * 3, [1.0] * 3, rtol=1e-12, max_evals=20_000
        )
    assert not result.converged


# --------------------------------------------------------------------------------------
# log_integral


def test_log_integral_of_a_density_at_exp_minus_1000():
    r1 = log_integral(lambda x: -1000 - 0.5 * x**2, -INF, INF)
    assert float(r1.value) == pytest.approx(-1000 + 0.5 * math.log(2 * math.pi), abs=1e-10)
    r2 = log_integral(lambda x: -1000 - 0.5 * (x**2).sum(1), [-INF, -INF], [INF, INF])
    assert float(r2.value) == pytest.approx(-1000 + math.log(2 * math.pi), abs=1e-8)
    assert float(r2.error) >= abs(float(r2.value) - (-1000 + math.log(2 * math.pi)))


def test_log_integral_gives_the_conjugate_normal_evidence_and_its_gradient():
    """y_i ~ N(θ, 1), θ ~ N(0, τ²): log p(y) in closed form; d/dτ by autograd."""
    y = torch.tensor([0.3, 1.2, -0.4, 0.9, 2.1])
    n = len(y)
    tau = torch.tensor(1.5, requires_grad=True)

    def log_joint(theta):
        prior = -0.5 * (theta / tau) ** 2 - torch.log(tau) - 0.5 * math.log(2 * math.pi)
        likelihood = (-0.5 * (y - theta[:, None]) ** 2).sum(1) - 0.5 * n * math.log(2 * math.pi)
        return prior + likelihood

    result = log_integral(log_joint, -INF, INF, rtol=1e-12)
    cov = torch.eye(n) + tau**2  # marginal: y ~ N(0, I + τ² 11')
    exact = torch.distributions.MultivariateNormal(torch.zeros(n), cov).log_prob(y)
    assert float(result.value.detach()) == pytest.approx(float(exact.detach()), abs=1e-10)
    (grad,) = torch.autograd.grad(result.value, tau)
    (exact_grad,) = torch.autograd.grad(exact, tau)
    assert float(grad) == pytest.approx(float(exact_grad), abs=1e-8)


def test_log_integral_bad_input():
    with pytest.raises(ValueError, match=r"lower < upper, got lower = 1\.0, upper = 0\.0"):
        log_integral(lambda x: -(x**2), 1.0, 0.0)
    with pytest.raises(ValueError, match="lower < upper on every axis"):
        log_integral(lambda x: -(x**2).sum(1), [0.0, 1.0], [1.0, 0.0])
    with pytest.raises(TypeError, match="upper must be a real number"):
        log_integral(lambda x: -(x**2), -math.inf, None)
    with pytest.raises(NonFiniteError):
        log_integral(lambda x: torch.full_like(x, math.inf), 0.0, 1.0)


# --------------------------------------------------------------------------------------
# expect_normal


@pytest.mark.parametrize("d", [1, 3, 6])
def test_expect_normal_of_an_exponential_is_the_moment_generating_function(d):
    """E[exp(a'X)] = exp(a'μ + a'Σa/2); product rule for d <= 4, sparse grid for d = 6."""
    rng = np.random.default_rng(d)
    mean = torch.as_tensor(rng.normal(size=d))
    B = torch.as_tensor(rng.normal(size=(d, d))) / math.sqrt(d)
    cov = B @ B.T + 0.5 * torch.eye(d)
    a = torch.as_tensor(rng.normal(size=d)) * 0.4
    result = expect_normal(lambda x: torch.exp(x @ a), mean, cov)
    exact = math.exp(float(a @ mean + 0.5 * a @ cov @ a))
    assert result.converged
    assert float(result.value) == pytest.approx(exact, rel=1e-8)


def test_expect_normal_is_differentiable_in_mean_and_cov():
    """E[X_0²] = Σ_00 + μ_0²: gradients 2μ_0 and 1."""
    mean = torch.tensor([0.5, -1.0], requires_grad=True)
    cov = torch.tensor([[1.5, 0.3], [0.3, 0.8]], requires_grad=True)
    result = expect_normal(lambda x: x[:, 0] ** 2, mean, cov)
    g_mean, g_cov = torch.autograd.grad(result.value, (mean, cov))
    assert torch.allclose(g_mean, torch.tensor([1.0, 0.0]), atol=1e-10)
    assert float(g_cov[0, 0]) == pytest.approx(1.0, abs=1e-10)


def test_expect_normal_reports_a_covariance_that_is_not_positive_definite():
    with pytest.raises(NotPositiveDefiniteError) as info:
        expect_normal(lambda x: x[:, 0], torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    assert info.value.min_eigenvalue == pytest.approx(-1.0)


def test_expect_normal_with_a_fixed_order_reports_the_change_as_error():
    result = expect_normal(
        lambda x: torch.cos(x[:, 0]), torch.zeros(1), torch.eye(1) * 4.0, order=30
    )
    assert float(result.value) == pytest.approx(math.exp(-2.0), abs=1e-12)
    assert result.n_evals == 29 + 30


def test_integrate_is_reachable_from_the_top_level():
    assert pc.integrate.quad is pc.integrate.quad and callable(pc.integrate.cubature)


def test_log_space_refines_exactly_as_linear_space():
    """The running log shift must not change the adaptive decisions: log_integral of log f
    takes the same points as cubature of f (a stale scale once inflated them 100-fold)."""
    log_f = lambda x: -0.5 * ((x - 0.3) ** 2).sum(1) / 0.04  # noqa: E731
    linear = cubature(lambda x: torch.exp(log_f(x)), [0.0, 0.0], [1.0, 1.0], rtol=1e-6)
    logged = log_integral(lambda x: log_f(x) - 500.0, [0.0, 0.0], [1.0, 1.0], rtol=1e-6)
    assert logged.n_evals == linear.n_evals
    assert float(logged.value) + 500.0 == pytest.approx(math.log(float(linear.value)), abs=1e-12)
