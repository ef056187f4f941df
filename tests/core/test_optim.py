"""minimize and conjugate_gradient against scipy, closed forms and numpy's solvers."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
from scipy.special import expit

import probcalc as pc
from probcalc.core import ConvergenceWarning, NonFiniteError, NotPositiveDefiniteError

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["newton", "newton-cg", "lbfgs", "adam", "sgd"]


def rosenbrock(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


# --------------------------------------------------------------------------------------
# Newton and friends


def test_newton_on_rosenbrock_reaches_tiny_gradient_within_50_iterations():
    result = pc.minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="newton", tol=1e-10)
    assert result.success
    assert result.nit <= 50
    assert float(torch.linalg.vector_norm(result.grad)) < 1e-8
    # the gradient reported is the true gradient at x (checked by finite differences)
    fd = pc.finite_difference(rosenbrock, result.x, order=4)
    assert torch.allclose(result.grad, fd, atol=1e-8)
    assert torch.allclose(result.x, torch.ones(2), atol=1e-9)


@pytest.mark.parametrize(
    ("method", "tol"), [("newton", 1e-10), ("newton-cg", 1e-10), ("lbfgs", 1e-7)]
)
def test_second_order_and_lbfgs_on_rosenbrock_100(method, tol):
    # L-BFGS's line search runs out of precision near max|grad| ~ 1e-8 here: tol 1e-7
    result = pc.minimize(rosenbrock, torch.zeros(100), method=method, tol=tol, max_iter=2000)
    assert result.success, result.message
    assert torch.allclose(result.x, torch.ones(100), atol=1e-5)


def _pima():
    data = np.loadtxt(ROOT / "examples" / "data" / "pima_standardized.dat")
    y = data[:, 0]
    X = np.hstack([np.ones((len(y), 1)), data[:, 1:]])
    return X, y


def test_newton_newton_cg_and_lbfgs_find_scipys_logistic_regression_map():
    """MAP of a Bayesian logistic regression on the Pima data, prior N(0, 1/tau) with tau = 1."""
    X, y = _pima()
    tau = 1.0

    def neg_log_joint_np(w):
        z = X @ w
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * tau * w @ w

    def neg_log_joint_grad_np(w):
        return X.T @ (expit(X @ w) - y) + tau * w

    def neg_log_joint_hess_np(w):
        p = expit(X @ w)
        return (X * (p * (1 - p))[:, None]).T @ X + tau * np.eye(X.shape[1])

    reference = scipy.optimize.minimize(
        neg_log_joint_np,
        np.zeros(X.shape[1]),
        jac=neg_log_joint_grad_np,
        hess=neg_log_joint_hess_np,
        method="Newton-CG",
        options={"xtol": 1e-12},
    )
    assert reference.success and np.abs(neg_log_joint_grad_np(reference.x)).max() < 1e-8
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def neg_log_joint(w):
        return pc.core.bernoulli_nll(yt, Xt @ w) + 0.5 * tau * w @ w

    for method in ["newton", "newton-cg", "lbfgs"]:
        tol = 1e-7 if method == "lbfgs" else None  # L-BFGS stalls near 2e-8 (rounding in f)
        result = pc.minimize(neg_log_joint, torch.zeros(X.shape[1]), method=method, tol=tol)
        assert result.success, (method, result.message)
        np.testing.assert_allclose(result.x.numpy(), reference.x, atol=1e-6, err_msg=method)
        assert float(result.fun) == pytest.approx(reference.fun, rel=1e-12)


def test_newton_cg_solves_a_100k_dimensional_strictly_convex_quadratic():
    """f(x) = ½ Σ a_i x_i² + ½ Σ (x_{i+1} - x_i)² - bᵀx: a tridiagonal SPD system, d = 100,000."""
    d = 100_000
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1.0, 10.0, size=d), rng.normal(size=d)
    at, bt = torch.as_tensor(a), torch.as_tensor(b)

    def f(x):
        return 0.5 * (at * x * x).sum() + 0.5 * ((x[1:] - x[:-1]) ** 2).sum() - bt @ x

    result = pc.minimize(f, torch.zeros(d), method="newton-cg", tol=1e-8)
    assert result.success, result.message
    assert float(torch.linalg.vector_norm(result.grad)) < 1e-6
    # the minimizer solves (diag(a) + L) x = b, L the path-graph Laplacian: banded solve
    diagonal = a + 2.0
    diagonal[0] -= 1.0
    diagonal[-1] -= 1.0
    bands = np.vstack([np.r_[0.0, -np.ones(d - 1)], diagonal, np.r_[-np.ones(d - 1), 0.0]])
    exact = scipy.linalg.solve_banded((1, 1), bands, b)
    assert np.abs(result.x.numpy() - exact).max() < 1e-6


def test_newton_modifies_an_indefinite_hessian_and_still_descends():
    """Double well f = x⁴/4 - x²/2 from x0 = 0.1, where f'' = 3x² - 1 < 0; minima at ±1."""
    result = pc.minimize(lambda x: (x**4 / 4 - x**2 / 2).sum(), torch.tensor([0.1]))
    assert result.success
    assert float(result.x) == pytest.approx(1.0, abs=1e-9)
    assert "modified Hessian" in result.message


def test_newton_backtracks_out_of_the_domain_of_log():
    """f = x - log x from x0 = 3: the full Newton step lands at x = -3 where f is NaN."""
    result = pc.minimize(lambda x: (x - torch.log(x)).sum(), torch.tensor([3.0]))
    assert result.success
    assert float(result.x) == pytest.approx(1.0, abs=1e-9)


def test_newton_refuses_to_call_a_saddle_point_a_minimum():
    """f = x² - y² from (1, 0): y stays 0 and Newton ends at the saddle (0, 0)."""
    with pytest.warns(ConvergenceWarning, match="smallest eigenvalue -2"):
        result = pc.minimize(lambda z: z[0] ** 2 - z[1] ** 2, torch.tensor([1.0, 0.0]))
    assert not result.success


# --------------------------------------------------------------------------------------
# torch.optim methods


def test_adam_and_sgd_reach_the_minimum_of_a_deterministic_convex_objective():
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
    b = torch.tensor([1.0, -1.0])
    exact = torch.linalg.solve(A, b)
    f = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
    adam = pc.minimize(
        f, torch.zeros(2), method="adam", tol=1e-8, max_iter=20_000, options={"lr": 0.05}
    )
    sgd = pc.minimize(
        f,
        torch.zeros(2),
        method="sgd",
        tol=1e-8,
        max_iter=5_000,
        options={"lr": 0.2, "momentum": 0.5},
    )
    for result in (adam, sgd):
        assert result.success, result.message
        assert torch.allclose(result.x, exact, atol=1e-7)


def test_sgd_on_a_noisy_objective_ends_within_its_stationary_spread():
    """f(x) = ½||x - c||² + ξᵀx with fresh ξ ~ N(0, σ²I) at each call. SGD with step η is an
    AR(1) process around c with stationary variance η σ² / (2 - η) per coordinate."""
    generator = torch.Generator().manual_seed(7)
    c, sigma, lr, d = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]), 0.5, 0.1, 5

    def noisy(x):
        noise = sigma * torch.randn(d, generator=generator)
        return 0.5 * ((x - c) ** 2).sum() + noise @ x

    result = pc.minimize(noisy, torch.zeros(d), method="sgd", max_iter=500, options={"lr": lr})
    assert result.success and "budget" in result.message
    stationary_sd = math.sqrt(lr * sigma**2 / (2 - lr))
    assert float((result.x - c).abs().max()) < 4 * stationary_sd


# --------------------------------------------------------------------------------------
# conjugate gradient


def _spd(n, condition, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = np.geomspace(1.0, condition, n)
    return (Q * eigenvalues) @ Q.T, rng.normal(size=n)


def test_conjugate_gradient_solves_a_500_by_500_spd_system():
    A, b = _spd(500, condition=100.0, seed=0)
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    result = pc.conjugate_gradient(lambda v: At @ v, bt, rtol=1e-10)
    assert result.converged
    assert result.nit <= 500
    residual = np.linalg.norm(b - A @ result.x.numpy()) / np.linalg.norm(b)
    assert residual <= 1e-10
    np.testing.assert_allclose(result.x.numpy(), np.linalg.solve(A, b), atol=1e-8)


def test_a_jacobi_preconditioner_cuts_iterations_on_a_badly_scaled_system():
    A, b = _spd(200, condition=10.0, seed=1)
    scale = np.geomspace(1.0, 1e3, 200)
    A = A * np.outer(scale, scale)  # D A D: badly scaled, well conditioned after Jacobi
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    diagonal = torch.diagonal(At)
    plain = pc.conjugate_gradient(lambda v: At @ v, bt, rtol=1e-10, max_iter=5000)
    jacobi = pc.conjugate_gradient(
        lambda v: At @ v, bt, rtol=1e-10, preconditioner=lambda r: r / diagonal
    )
    assert jacobi.converged and jacobi.nit < plain.nit / 2
    np.testing.assert_allclose(A @ jacobi.x.numpy(), b, atol=1e-8 * np.abs(b).max() * 1e3)


def test_conjugate_gradient_accepts_any_shape_and_a_warm_start():
    A, b = _spd(12, condition=10.0, seed=2)
    At = torch.as_tensor(A)
    B = torch.as_tensor(b).reshape(3, 4)
    result = pc.conjugate_gradient(
        lambda V: (At @ V.reshape(-1)).reshape(3, 4), B, x0=torch.ones(3, 4)
    )
    assert result.x.shape == (3, 4)
    np.testing.assert_allclose(result.x.numpy().ravel(), np.linalg.solve(A, b), atol=1e-9)


def test_conjugate_gradient_reports_an_indefinite_matrix():
    A = torch.diag(torch.tensor([2.0, 1.0, -3.0]))
    b = torch.ones(3)
    with pytest.raises(NotPositiveDefiniteError) as info:
        pc.conjugate_gradient(lambda v: A @ v, b)
    # a Rayleigh quotient: an upper bound on the smallest eigenvalue, which is -3
    assert info.value.min_eigenvalue <= 0 and info.value.min_eigenvalue >= -3
    stopped = pc.conjugate_gradient(lambda v: A @ v, b, stop_on_negative_curvature=True)
    assert stopped.negative_curvature and not stopped.converged


def test_conjugate_gradient_warns_when_it_runs_out_of_iterations():
    A, b = _spd(50, condition=1e4, seed=3)
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    with pytest.warns(ConvergenceWarning, match="residual norm"):
        result = pc.conjugate_gradient(lambda v: At @ v, bt, max_iter=3)
    assert not result.converged and result.nit == 3


def test_conjugate_gradient_bad_input():
    with pytest.raises(ValueError, match="shape of b"):
        pc.conjugate_gradient(lambda v: v[:2], torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        pc.conjugate_gradient(lambda v: v, torch.ones(3), rtol=-1.0)
    with pytest.raises(NonFiniteError):
        pc.conjugate_gradient(lambda v: v * float("nan"), torch.ones(3))


# --------------------------------------------------------------------------------------
# Bad input and honest failure


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_loss_at_x0_names_the_value(method):
    options = {"lr": 0.1} if method == "sgd" else None
    with pytest.raises(NonFiniteError, match="inf") as info:
        pc.minimize(
            lambda x: -torch.log(x).sum(), torch.tensor([0.0, 1.0]), method=method, options=options
        )
    assert info.value.value == math.inf
    with pytest.raises(NonFiniteError, match="nan"):
        pc.minimize(
            lambda x: torch.sqrt(x).sum(), torch.tensor([-1.0]), method=method, options=options
        )


@pytest.mark.parametrize("x0", [torch.ones(2, 2), torch.tensor(1.0), torch.ones(0)])
def test_wrong_shaped_x0_is_a_value_error(x0):
    with pytest.raises(ValueError, match=r"x0 must have shape \(d,\)"):
        pc.minimize(lambda x: (x**2).sum(), x0)


def test_x0_that_is_not_finite_or_a_non_scalar_objective_is_a_value_error():
    with pytest.raises(ValueError, match="finite"):
        pc.minimize(lambda x: (x**2).sum(), torch.tensor([1.0, float("nan")]))
    for method in ["newton", "lbfgs"]:
        with pytest.raises(ValueError, match="0-d tensor"):
            pc.minimize(lambda x: x**2, torch.ones(2), method=method)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'bfgs'") as info:
        pc.minimize(lambda x: (x**2).sum(), torch.ones(2), method="bfgs")
    for name in METHODS:
        assert repr(name) in str(info.value)


def test_unknown_options_and_missing_learning_rate_are_value_errors():
    with pytest.raises(ValueError, match="unknown options"):
        pc.minimize(lambda x: (x**2).sum(), torch.ones(2), options={"lr": 1.0})
    with pytest.raises(ValueError, match="learning rate"):
        pc.minimize(lambda x: (x**2).sum(), torch.ones(2), method="sgd")


@pytest.mark.parametrize("method", METHODS)
def test_non_convergence_sets_success_false_and_warns(method):
    options = {"lr": 1e-3} if method == "sgd" else None
    with pytest.warns(ConvergenceWarning, match="max_iter") as record:
        result = pc.minimize(
            rosenbrock,
            torch.tensor([-1.2, 1.0]),
            method=method,
            max_iter=2,
            tol=1e-10,
            options=options,
        )
    assert not result.success
    assert "max|grad|" in str(record[0].message)


def test_integer_x0_becomes_float64_and_float32_is_kept():
    assert pc.minimize(lambda x: ((x - 1) ** 2).sum(), [3, 4]).x.dtype == torch.float64
    x32 = pc.minimize(lambda x: ((x - 1) ** 2).sum(), torch.ones(2, dtype=torch.float32) * 3)
    assert x32.x.dtype == torch.float32 and x32.success


@pytest.mark.parametrize("method", ["newton", "newton-cg", "lbfgs", "adam"])
def test_callback_sees_every_iterate_and_can_stop(method):
    seen = []

    def record(state):
        seen.append((state.nit, float(state.fun), float(rosenbrock(state.x))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = pc.minimize(
            rosenbrock, torch.tensor([-1.2, 1.0]), method=method, callback=record, max_iter=300
        )
    assert [nit for nit, _, _ in seen] == list(range(1, len(seen) + 1))
    assert all(fun == pytest.approx(true, rel=1e-12) for _, fun, true in seen)
    assert len(seen) >= result.nit - 1
    with pytest.warns(ConvergenceWarning, match="stopped by callback"):
        stopped = pc.minimize(
            rosenbrock,
            torch.tensor([-1.2, 1.0]),
            method=method,
            callback=lambda state: state.nit >= 3,
        )
    assert stopped.nit == 3 and not stopped.success
