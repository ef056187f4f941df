"""quad against closed forms, scipy.integrate.quad and finite differences."""

import math
import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import torch

import probcalc as pc
from probcalc.core import ConvergenceWarning, NonFiniteError
from probcalc.integrate import quad

INF = math.inf

CLOSED_FORMS = {
    # name: (f, a, b, exact)
    "gaussian over R": (lambda x: torch.exp(-(x**2)), -INF, INF, math.sqrt(math.pi)),
    "second moment of N(0,1)": (
        lambda x: x**2 * torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi),
        -INF,
        INF,
        1.0,
    ),
    "fourth moment of N(1, 2²)": (
        lambda x: x**4 * torch.exp(-((x - 1) ** 2) / 8) / math.sqrt(8 * math.pi),
        -INF,
        INF,
        1 + 6 * 4 + 3 * 16,
    ),
    "Student-t ν=3 normalizer": (
        lambda x: (1 + x**2 / 3) ** -2,
        -INF,
        INF,
        math.sqrt(3 * math.pi) * math.gamma(1.5) / math.gamma(2),
    ),
    "Student-t ν=1.5 normalizer": (
        lambda x: (1 + x**2 / 1.5) ** -1.25,
        -INF,
        INF,
        math.sqrt(1.5 * math.pi) * math.gamma(0.75) / math.gamma(1.25),
    ),
    "Cauchy on [0, ∞)": (lambda x: 1 / (1 + x**2), 0, INF, math.pi / 2),
    "exp on (-∞, 0]": (torch.exp, -INF, 0, 1.0),
    "gamma(1/2) on [0, ∞)": (lambda x: x**-0.5 * torch.exp(-x), 0, INF, math.sqrt(math.pi)),
    "x^-1/2 on [0, 1]": (lambda x: x**-0.5, 0, 1, 2.0),
    "(1-x)^-1/2 on [0, 1]": (lambda x: (1 - x) ** -0.5, 0, 1, 2.0),
    "(x-1)^-1/2 on [1, 2]": (lambda x: (x - 1) ** -0.5, 1, 2, 2.0),
    "(7-x)^-1/2 on [3, 7]": (lambda x: (7 - x) ** -0.5, 3, 7, 4.0),
    "x (1-x)^-1/2 on [0, 1]": (lambda x: x * (1 - x) ** -0.5, 0, 1, 4 / 3),
    "log(1-x) on [0, 1]": (lambda x: torch.log1p(-x), 0, 1, -1.0),
    "e^-x (x-2)^-1/2 on [2, ∞)": (
        lambda x: torch.exp(-x) * (x - 2) ** -0.5,
        2,
        INF,
        math.exp(-2) * math.sqrt(math.pi),
    ),
    "log x on [0, 1]": (torch.log, 0, 1, -1.0),
    "x^-0.9 on [0, 1]": (lambda x: x**-0.9, 0, 1, 10.0),
    "cos 50x on [0, 1]": (lambda x: torch.cos(50 * x), 0, 1, math.sin(50) / 50),
    "sin on [π, 0] (reversed)": (torch.sin, math.pi, 0, -2.0),
}


@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_closed_forms_to_1e_10_with_an_honest_error(name):
    f, a, b, exact = CLOSED_FORMS[name]
    result = quad(f, a, b)
    assert result.converged
    true_error = abs(float(result.value) - exact)
    assert true_error <= 1e-10 * abs(exact), (true_error, result)
    assert true_error <= float(result.error), "the reported error must bound the true error"


def test_a_equal_b_gives_zero_with_leibniz_derivatives():
    b = torch.tensor(0.7, requires_grad=True)
    a = torch.tensor(0.7, requires_grad=True)
    result = quad(torch.exp, a, b)
    assert float(result.value.detach()) == 0.0
    grad_a, grad_b = torch.autograd.grad(result.value, (a, b))
    assert float(grad_b) == pytest.approx(math.exp(0.7)) and float(grad_a) == pytest.approx(
        -math.exp(0.7)
    )


def test_a_batch_of_integrands_shares_one_call_per_round():
    """∫_0^∞ exp(-a x²) cos(b x) dx = ½ √(π/a) exp(-b²/4a) for a grid of (a, b)."""
    a = torch.linspace(0.5, 3.0, 7)[:, None]
    b = torch.linspace(0.0, 4.0, 5)[None, :]
    calls = []

    def f(x):
        calls.append(x.shape)
        return torch.exp(-a * x[:, None, None] ** 2) * torch.cos(b * x[:, None, None])

    result = quad(f, 0, INF)
    exact = 0.5 * torch.sqrt(math.pi / a) * torch.exp(-(b**2) / (4 * a))
    assert result.value.shape == (7, 5)
    assert torch.allclose(result.value, exact, rtol=1e-10, atol=0)
    assert bool((result.error >= (result.value - exact).abs()).all())
    assert all(len(shape) == 1 for shape in calls)  # one 1-D array of nodes per call


def test_against_scipy_quad_on_a_hard_oscillatory_integrand():
    f_np = lambda x: np.sin(1 / x) * x  # noqa: E731
    reference, _ = scipy.integrate.quad(f_np, 0.01, 1, epsabs=0, epsrel=1e-12, limit=500)
    result = quad(lambda x: torch.sin(1 / x) * x, 0.01, 1)
    assert float(result.value) == pytest.approx(reference, rel=1e-10)


def test_gradients_match_finite_differences():
    """d/dθ ∫_a^b exp(-θ x²) dx, and d/da, d/db (Leibniz: -f(a), f(b)), to 1e-7."""
    theta = torch.tensor(0.8, requires_grad=True)
    a = torch.tensor(-0.3, requires_grad=True)
    b = torch.tensor(1.7, requires_grad=True)
    result = quad(lambda x: torch.exp(-theta * x**2), a, b)
    grads = torch.autograd.grad(result.value, (theta, a, b))

    def value(params):
        t, lo, hi = params
        return quad(lambda x: torch.exp(-t * x**2), lo, hi).value

    fd = pc.finite_difference(value, torch.stack([theta, a, b]).detach(), order=4, h=1e-3)
    np.testing.assert_allclose([float(g) for g in grads], fd.numpy(), atol=1e-7)
    assert float(grads[2]) == pytest.approx(math.exp(-0.8 * 1.7**2), abs=1e-10)
    assert float(grads[1]) == pytest.approx(-math.exp(-0.8 * 0.09), abs=1e-10)


def test_gradient_through_an_infinite_limit_transform():
    """d/dμ ∫_0^∞ exp(-(x-μ)²/2) dx = exp(-μ²/2) (the density at 0)."""
    mu = torch.tensor(0.4, requires_grad=True)
    result = quad(lambda x: torch.exp(-((x - mu) ** 2) / 2), 0, INF)
    (grad,) = torch.autograd.grad(result.value, mu)
    assert float(grad) == pytest.approx(math.exp(-0.08), abs=1e-9)


def test_each_integrand_can_have_its_own_limits():
    """Φ(b) - Φ(a) for a grid of intervals, some infinite, some reversed, one empty, in one
    call; and the gradient with respect to the upper limits is the density there."""
    a = torch.tensor([0.0, -INF, 1.0, -INF, 0.5, 2.0, -1.0])
    b = torch.tensor([1.0, 0.3, INF, INF, 0.5, -2.0, 3.0], requires_grad=True)

    def density(x):  # x: (n, 7), column j on interval j
        return torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)

    result = quad(density, a, b)
    bn, an = b.detach().numpy(), a.numpy()
    exact = scipy.special.ndtr(bn) - scipy.special.ndtr(an)
    np.testing.assert_allclose(result.value.detach().numpy(), exact, rtol=1e-10, atol=1e-15)
    (grad,) = torch.autograd.grad(result.value.sum(), b)
    finite = np.isfinite(bn)
    np.testing.assert_allclose(
        grad.numpy()[finite], np.exp(-(bn[finite] ** 2) / 2) / math.sqrt(2 * math.pi), rtol=1e-9
    )


def test_a_function_of_one_point_is_vmapped():
    result = quad(lambda x: torch.sin(x) ** 2, 0, math.pi, batched=False)
    assert float(result.value) == pytest.approx(math.pi / 2, rel=1e-12)


def test_a_singularity_at_an_end_other_than_zero_stops_short_of_it_honestly():
    """∫_0^1 (1-x)^-0.9 = 10, but float64 has no points nearer 1 than 1.1e-16, and the part
    of the integral within a few ulps of 1 is about 0.25: not converged, with an error that
    covers the true one, and f is never evaluated at 1 itself (where it is infinite)."""
    with pytest.warns(ConvergenceWarning, match="round-off"):
        result = quad(lambda x: (1 - x) ** -0.9, 0, 1)
    assert not result.converged
    assert abs(float(result.value) - 10.0) <= float(result.error)


def test_max_evals_gives_converged_false_and_a_warning():
    with pytest.warns(ConvergenceWarning, match="max_evals"):
        result = quad(lambda x: x**-0.9, 0, 1, max_evals=200)
    assert not result.converged and result.n_evals <= 200


def test_non_finite_values_name_the_node():
    with pytest.raises(NonFiniteError, match=r"nan at the node x = 0\.9") as info:
        quad(lambda x: torch.where(x > 0.9, torch.nan, x), 0.0, 1.0)
    assert float(info.value.where) > 0.9


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match=r"shape \(42,\)"):
        quad(lambda x: x.sum(), 0, 1)  # a 0-d output where a batch was declared
    with pytest.raises(ValueError, match="broadcast"):
        quad(torch.sin, torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"the same shape"):
        quad(lambda x: x.sum(1), torch.zeros(3), torch.ones(3))  # per-item limits, one output
    with pytest.raises(ValueError, match="round-off"):
        quad(torch.sin, 0, 1, rtol=1e-17)
    with pytest.raises(ValueError, match="NaN"):
        quad(torch.sin, math.nan, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quad(torch.sin, 0, 1)  # no warning on a clean run


def test_a_one_point_integrand_written_with_torch_distributions_is_vmapped():
    """Validation in torch.distributions calls .item(), which vmap cannot trace; the
    integrators switch it off while they evaluate. ∫ N(x | 0, 1) over (-1, 1) = erf(1/√2)."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    result = quad(lambda x: normal.log_prob(x).exp(), -1.0, 1.0, batched=False)
    assert abs(float(result.value) - math.erf(1 / math.sqrt(2))) < 1e-12
    assert torch.distributions.Distribution._validate_args  # restored afterwards
