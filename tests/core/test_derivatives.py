"""Derivatives against closed forms (numpy), Hessian-vector products against the Hessian,
and finite differences against their known orders of accuracy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

import probcalc as pc
from probcalc.core import NonFiniteError

# --------------------------------------------------------------------------------------
# A table of functions with closed-form gradients and Hessians, written in numpy.


def _rosenbrock(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


def _rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def _rosenbrock_hessian(x):
    d = x.size
    H = np.zeros((d, d))
    diag = np.zeros(d)
    diag[:-1] = 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    diag[1:] += 200.0
    H[np.arange(d), np.arange(d)] = diag
    off = -400.0 * x[:-1]
    H[np.arange(d - 1), np.arange(1, d)] = off
    H[np.arange(1, d), np.arange(d - 1)] = off
    return H


C3 = np.array([0.5, -1.0, 2.0, 0.25])
A_EXP = np.array([0.3, -0.7, 1.1, 0.2, -0.4])
W = np.random.default_rng(1).normal(size=(6, 4))
LABEL = 2


def _softmax_xent_parts(x):
    z = W @ x
    p = softmax(z)
    onehot = np.eye(6)[LABEL]
    return z, p, onehot


CASES = {
    # f(x) = Σ c_i x_i³ + (Σ x_i)²
    "polynomial": (
        lambda x: (torch.as_tensor(C3) * x**3).sum() + x.sum() ** 2,
        lambda x: 3 * C3 * x**2 + 2 * x.sum(),
        lambda x: np.diag(6 * C3 * x) + 2.0,
        np.array([0.3, -1.2, 0.7, 2.0]),
    ),
    # f(x) = Σ exp(a_i x_i) + Σ log(1 + x_i²)
    "exp-log": (
        lambda x: torch.exp(torch.as_tensor(A_EXP) * x).sum() + torch.log1p(x**2).sum(),
        lambda x: A_EXP * np.exp(A_EXP * x) + 2 * x / (1 + x**2),
        lambda x: np.diag(A_EXP**2 * np.exp(A_EXP * x) + 2 * (1 - x**2) / (1 + x**2) ** 2),
        np.array([0.1, -0.5, 1.5, -2.0, 0.9]),
    ),
    # f(x) = log Σ exp(x_i): gradient softmax(x), Hessian diag(p) - p pᵀ
    "logsumexp": (
        lambda x: torch.logsumexp(x, 0),
        lambda x: softmax(x),
        lambda x: np.diag(softmax(x)) - np.outer(softmax(x), softmax(x)),
        np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0]),
    ),
    # softmax cross-entropy of logits W x at class LABEL
    "softmax-cross-entropy": (
        lambda x: torch.nn.functional.cross_entropy(
            (torch.as_tensor(W) @ x).unsqueeze(0), torch.tensor([LABEL])
        ),
        lambda x: W.T @ (_softmax_xent_parts(x)[1] - _softmax_xent_parts(x)[2]),
        lambda x: (
            W.T
            @ (np.diag(_softmax_xent_parts(x)[1]) - np.outer(*[_softmax_xent_parts(x)[1]] * 2))
            @ W
        ),
        np.array([0.2, -0.3, 1.0, 0.4]),
    ),
    "rosenbrock-2": (
        lambda x: _rosenbrock(x),
        _rosenbrock_grad,
        _rosenbrock_hessian,
        np.array([-1.2, 1.0]),
    ),
    "rosenbrock-100": (
        lambda x: _rosenbrock(x),
        _rosenbrock_grad,
        _rosenbrock_hessian,
        np.random.default_rng(2).uniform(-2, 2, size=100),
    ),
}


def _close(actual, expected, tol=1e-10):
    actual = actual.detach().numpy()
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("name", CASES)
def test_grad_matches_closed_form(name):
    f, grad, _, x0 = CASES[name]
    _close(pc.grad(f)(torch.as_tensor(x0)), grad(x0))


@pytest.mark.parametrize("name", CASES)
def test_value_and_grad_matches_closed_form(name):
    f, grad, _, x0 = CASES[name]
    x = torch.as_tensor(x0)
    value, gradient = pc.value_and_grad(f)(x)
    assert float(value) == pytest.approx(float(f(x)), rel=1e-14)
    _close(gradient, grad(x0))


@pytest.mark.parametrize("mode", ["reverse-over-reverse", "forward-over-reverse"])
@pytest.mark.parametrize("name", CASES)
def test_hessian_matches_closed_form(name, mode):
    f, _, hessian, x0 = CASES[name]
    _close(pc.hessian(f, mode=mode)(torch.as_tensor(x0)), hessian(x0))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", CASES)
def test_jacobian_of_gradient_is_hessian(name, mode):
    f, _, hessian, x0 = CASES[name]
    _close(pc.jacobian(pc.grad(f), mode=mode)(torch.as_tensor(x0)), hessian(x0))


@pytest.mark.parametrize("name", CASES)
def test_hvp_equals_hessian_times_vector(name):
    f, _, hessian, x0 = CASES[name]
    v = np.random.default_rng(3).normal(size=x0.size)
    _close(pc.hvp(f, torch.as_tensor(x0), torch.as_tensor(v)), hessian(x0) @ v)


def test_hvp_operator_reuses_one_linearization_for_many_vectors():
    f, grad, hessian, x0 = CASES["rosenbrock-100"]
    operator = pc.hvp_operator(f, torch.as_tensor(x0))
    _close(operator.grad, grad(x0))
    assert float(operator.value) == pytest.approx(_rosenbrock(x0), rel=1e-14)
    V = np.random.default_rng(4).normal(size=(5, x0.size))
    for v in V:
        _close(operator(torch.as_tensor(v)), hessian(x0) @ v)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_of_vector_functions(mode):
    def f(x):
        return torch.stack([x[0] ** 2 * x[1], 5 * x[0] + torch.sin(x[1]), torch.exp(x[2]) * x[0]])

    x0 = np.array([0.7, -1.3, 0.4])
    expected = np.array(
        [
            [2 * x0[0] * x0[1], x0[0] ** 2, 0.0],
            [5.0, np.cos(x0[1]), 0.0],
            [np.exp(x0[2]), 0.0, x0[0] * np.exp(x0[2])],
        ]
    )
    _close(pc.jacobian(f, mode=mode)(torch.as_tensor(x0)), expected)
    # softmax: J = diag(p) - p pᵀ
    z = np.array([0.5, -1.0, 2.0, 0.0])
    p = softmax(z)
    _close(
        pc.jacobian(lambda x: torch.softmax(x, 0), mode=mode)(torch.as_tensor(z)),
        np.diag(p) - np.outer(p, p),
    )


def test_jacobian_shape_follows_output_then_input():
    J = pc.jacobian(lambda X: X.sum(0) ** 2)(torch.ones(3, 2))
    assert J.shape == (2, 3, 2)


def test_transforms_with_aux_and_argnums():
    def f(x, y):
        value = (x**2 * y).sum()
        return value, {"value": value}

    x, y = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])
    gradient, aux = pc.grad(f, has_aux=True)(x, y)
    _close(gradient, 2 * x.numpy() * y.numpy())
    assert float(aux["value"]) == pytest.approx(3.0 - 4.0)
    _, gy = pc.grad(lambda a, b: f(a, b)[0], argnums=(0, 1))(x, y)
    _close(gy, x.numpy() ** 2)
    (value, aux), gradient = pc.value_and_grad(f, has_aux=True)(x, y)
    assert float(value) == pytest.approx(-1.0)


def test_batch_maps_a_function_of_one_point_over_rows():
    f, grad, hessian, _ = CASES["exp-log"]
    X = np.random.default_rng(5).normal(size=(7, 5))
    G = pc.grad(f, batch=True)(torch.as_tensor(X))
    H = pc.hessian(f, batch=True)(torch.as_tensor(X))
    values, G2 = pc.value_and_grad(f, batch=True)(torch.as_tensor(X))
    for i, x in enumerate(X):
        _close(G[i], grad(x))
        _close(G2[i], grad(x))
        _close(H[i], hessian(x))
        assert float(values[i]) == pytest.approx(float(f(torch.as_tensor(x))), rel=1e-14)


def test_non_scalar_function_is_a_clear_error():
    with pytest.raises(ValueError, match="0-d tensor"):
        pc.grad(lambda x: x**2)(torch.ones(3))
    with pytest.raises(ValueError, match="0-d tensor"):
        pc.hessian(lambda x: x**2)(torch.ones(3))
    with pytest.raises(ValueError, match="shape of x"):
        pc.hvp(lambda x: (x**2).sum(), torch.ones(3), torch.ones(4))


def test_unknown_modes_list_the_valid_ones():
    with pytest.raises(ValueError, match="'reverse', 'forward'"):
        pc.jacobian(torch.sin, mode="sideways")
    with pytest.raises(ValueError, match="'reverse-over-reverse', 'forward-over-reverse'"):
        pc.hessian(torch.sin, mode="forward")


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_quadratic_forms_have_hessian_a_plus_a_transpose(d, seed):
    rng = np.random.default_rng(seed)
    A, b, x, v = rng.normal(size=(d, d)), rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)
    At = torch.as_tensor(A)

    def f(z):
        return 0.5 * z @ At @ z + torch.as_tensor(b) @ z

    symmetric = 0.5 * (A + A.T)
    _close(pc.grad(f)(torch.as_tensor(x)), symmetric @ x + b)
    _close(pc.hessian(f)(torch.as_tensor(x)), symmetric)
    _close(pc.hvp(f, torch.as_tensor(x), torch.as_tensor(v)), symmetric @ v)


# --------------------------------------------------------------------------------------
# Finite differences: the limit definition, with known orders of accuracy.


def _smooth(x):
    return (torch.sin(x) * torch.exp(0.5 * x)).sum()


def _smooth_grad(x):
    return np.exp(0.5 * x) * (np.cos(x) + 0.5 * np.sin(x))


@pytest.mark.parametrize("order", [2, 4])
def test_finite_difference_error_shrinks_at_its_order(order):
    x0 = np.array([0.3, -1.1, 2.0])
    steps = [0.2, 0.1, 0.05, 0.025]
    errors = [
        np.abs(
            pc.finite_difference(_smooth, torch.as_tensor(x0), h=h, order=order).numpy()
            - _smooth_grad(x0)
        ).max()
        for h in steps
    ]
    slopes = np.diff(np.log(errors)) / np.diff(np.log(steps))
    assert np.all(np.abs(slopes - order) < 0.25), slopes


@pytest.mark.parametrize(("order", "tol"), [(2, 1e-9), (4, 1e-10)])
def test_finite_difference_default_step_is_accurate(order, tol):
    x0 = np.array([0.3, -1.1, 2.0, 10.0])
    fd = pc.finite_difference(_smooth, torch.as_tensor(x0), order=order).numpy()
    expected = _smooth_grad(x0)
    assert np.abs(fd - expected).max() <= tol * np.abs(expected).max()


def test_finite_difference_of_a_vector_function_is_its_jacobian():
    x0 = torch.tensor([[0.5, -0.2], [1.0, 0.3]])
    f = lambda X: torch.stack([X.prod(), X.sum() ** 2, torch.sin(X[0, 1])])  # noqa: E731
    fd = pc.finite_difference(f, x0, order=4)
    exact = pc.jacobian(f)(x0)
    assert fd.shape == (3, 2, 2)
    assert torch.allclose(fd, exact, atol=1e-10)


def test_finite_difference_along_a_direction():
    x0, v = torch.tensor([0.3, -1.1, 2.0]), torch.tensor([1.0, 2.0, -0.5])
    fd = pc.finite_difference(_smooth, x0, direction=v, order=4)
    assert float(fd) == pytest.approx(float(_smooth_grad(x0.numpy()) @ v.numpy()), abs=1e-10)


def test_finite_difference_works_for_functions_vmap_cannot_trace():
    def f(x):  # .item() and Python math: not vmappable
        return torch.tensor(math.sin(x[0].item()) * x[1].item())

    fd = pc.finite_difference(f, torch.tensor([0.4, 2.0]), order=4)
    assert np.allclose(fd.numpy(), [math.cos(0.4) * 2.0, math.sin(0.4)], atol=1e-10)


def test_finite_difference_bad_input():
    with pytest.raises(ValueError, match="order must be 2 or 4"):
        pc.finite_difference(_smooth, torch.ones(2), order=3)
    with pytest.raises(ValueError, match="floating point"):
        pc.finite_difference(_smooth, torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive"):
        pc.finite_difference(_smooth, torch.ones(2), h=0.0)
    with pytest.raises(NonFiniteError, match="not finite"):
        pc.finite_difference(lambda x: torch.log(x).sum(), torch.tensor([1e-12, 1.0]), h=1e-3)


# --------------------------------------------------------------------------------------
# Functions of an nn.Module's parameters.


def test_functional_module_gradient_of_a_linear_model_matches_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    fm = pc.functional_module(model)
    X, y = torch.randn(20, 3), torch.randn(20)
    loss = lambda theta: ((fm(theta, X).squeeze(-1) - y) ** 2).sum()  # noqa: E731
    w, b = model.weight.detach().numpy().ravel(), float(model.bias.detach())
    residual = X.numpy() @ w + b - y.numpy()
    expected = np.concatenate([2 * X.numpy().T @ residual, [2 * residual.sum()]])
    assert fm.names == ("weight", "bias") and fm.dim == 4
    _close(pc.grad(loss)(fm.params), expected)
    # the Hessian of a least-squares loss is 2 [X 1]ᵀ[X 1]
    design = np.hstack([X.numpy(), np.ones((20, 1))])
    _close(pc.hessian(loss)(fm.params), 2 * design.T @ design)


def test_functional_module_hessian_of_an_mlp_matches_finite_differences():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model = model.double()
    fm = pc.functional_module(model)
    X, y = torch.randn(10, 2), torch.randn(10, 1)
    loss = lambda theta: ((fm(theta, X) - y) ** 2).mean()  # noqa: E731
    H = pc.hessian(loss)(fm.params)
    H_fd = pc.finite_difference(pc.grad(loss), fm.params, order=4)
    assert torch.allclose(H, H_fd, atol=1e-8)
    assert torch.allclose(H, H.T, atol=1e-12)


def test_functional_module_round_trip():
    model = torch.nn.Linear(3, 2)
    fm = pc.functional_module(model)
    theta = torch.arange(float(fm.dim))
    params = fm.unflatten(theta)
    assert params["weight"].shape == (2, 3)
    assert torch.equal(fm.flatten(params), theta)
    fm.load_into_module(theta)
    assert torch.equal(model.bias.detach(), torch.tensor([6.0, 7.0]))
    with pytest.raises(ValueError, match="shape"):
        fm.unflatten(torch.ones(5))
