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
    assert result.converged
    assert result.nit <= 50
    assert float(torch.linalg.vector_norm(result.grad)) < 1e-8
    # the gradient reported is the true gradient at x (checked by finite differences)
    fd = pc.finite_difference(rosenbrock, result.x, order=4)
    assert torch.allclose(result.grad, fd, atol=1e-8)
    assert torch.allclose(result.x, torch.ones(2), atol=1e-9)


def _rosenbrock_smallest_curvature(x):
    """The smallest eigenvalue of scipy's Rosenbrock Hessian at x (numpy)."""
    return float(np.linalg.eigvalsh(scipy.optimize.rosen_hess(np.asarray(x)))[0])


def _distance_bound(gradient, smallest_curvature):
    """||x - x*||_2 <= ||∇f(x)||_2 / λ_min near a strict minimizer x*; twice that for the
    Hessian's change between x and x*."""
    return 2.0 * float(np.linalg.norm(gradient)) / smallest_curvature


@pytest.mark.parametrize(
    ("method", "tol"), [("newton", 1e-10), ("newton-cg", 1e-10), ("lbfgs", 1e-7)]
)
def test_second_order_and_lbfgs_on_rosenbrock_100(method, tol):
    # torch's L-BFGS reaches max|grad| ~ 1e-13 here once its absolute constants are scaled
    # out (see optim._lbfgs_scales): tol 1e-7 leaves a wide margin on any CPU
    result = pc.minimize(rosenbrock, torch.zeros(100), method=method, tol=tol, max_iter=2000)
    assert result.converged, result.message
    gradient = scipy.optimize.rosen_der(result.x.numpy())  # independent of autograd
    assert np.abs(gradient).max() <= 1.01 * tol
    distance = np.linalg.norm(result.x.numpy() - 1.0)
    assert distance <= _distance_bound(gradient, _rosenbrock_smallest_curvature(np.ones(100)))
    assert distance < 1e-5


@pytest.mark.parametrize("d", [2, 10, 50])
@pytest.mark.parametrize("method", ["newton", "newton-cg"])
def test_newton_and_newton_cg_reach_the_rosenbrock_minimizer_in_2_10_and_50_dimensions(d, method):
    """From scipy's example start, to x* = (1, ..., 1) with max|grad| 1e-10 (the gradient's
    rounding floor there is near 1e-13)."""
    x0 = torch.as_tensor(np.resize([1.3, 0.7, 0.8, 1.9, 1.2], d))
    result = pc.minimize(rosenbrock, x0, method=method, tol=1e-10)
    assert result.converged, result.message
    gradient = scipy.optimize.rosen_der(result.x.numpy())
    assert np.abs(gradient).max() <= 1.01e-10
    error = result.x.numpy() - 1.0
    smallest = _rosenbrock_smallest_curvature(np.ones(d))
    assert np.linalg.norm(error) <= _distance_bound(gradient, smallest)
    assert np.abs(error).max() < 1e-8


def _numpy_newton(gradient, hessian, x):
    """Plain Newton steps in numpy until the gradient stops shrinking (a reference solver)."""
    best = np.linalg.norm(gradient(x))
    for _ in range(100):
        candidate = x - np.linalg.solve(hessian(x), gradient(x))
        norm = np.linalg.norm(gradient(candidate))
        if not norm < best:
            break
        x, best = candidate, norm
    return x


def test_newton_does_not_stall_at_the_local_minimizer_of_the_10d_rosenbrock_function():
    """From (-1.2, 1, -1.2, 1, ...) Newton ends at the local minimizer near (-1, 1, ..., 1)
    (f = 3.99). There the decreases of f that Armijo's test asks for are at rounding level;
    a search that only compares values of f stalls (max|grad| 5.7e-8 after 100 iterations).
    Reference: plain Newton in numpy from (-1, 1, ..., 1)."""
    reference = _numpy_newton(
        scipy.optimize.rosen_der, scipy.optimize.rosen_hess, np.r_[-1.0, np.ones(9)]
    )
    assert np.abs(scipy.optimize.rosen_der(reference)).max() < 1e-12
    smallest = _rosenbrock_smallest_curvature(reference)
    assert smallest > 0  # a strict local minimizer
    x0 = torch.as_tensor(np.tile([-1.2, 1.0], 5))
    default = pc.minimize(rosenbrock, x0, method="newton")
    assert default.converged and default.nit <= 50, default.message
    tight = pc.minimize(rosenbrock, x0, method="newton", tol=1e-11)
    assert tight.converged, tight.message
    gradient = scipy.optimize.rosen_der(tight.x.numpy())
    error = np.linalg.norm(tight.x.numpy() - reference)
    assert error <= _distance_bound(gradient, smallest) + 1e-13
    assert error < 1e-10


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e12])
@pytest.mark.parametrize("method", ["newton", "newton-cg"])
def test_a_large_constant_in_f_does_not_stop_newton_short(offset, method):
    """f = C + Σ cosh(x - a) + ½ (x - a)ᵀA(x - a), A ⪰ 0, minimizer a. A constant C puts the
    rounding of f at eps C, above the decreases that Newton's last steps make (1e12: 1e-4);
    the gradient does not see C. Since (x - a)ᵀ∇f >= ||x - a||², ||x - a|| <= ||∇f||."""
    rng = np.random.default_rng(3)
    d = 6
    B = rng.normal(size=(d, d))
    A, a = B @ B.T / d, rng.normal(size=d)
    At, at = torch.as_tensor(A), torch.as_tensor(a)

    def f(x):
        r = x - at
        return offset + torch.cosh(r).sum() + 0.5 * r @ At @ r

    result = pc.minimize(f, torch.zeros(d), method=method, tol=1e-12)
    assert result.converged, result.message
    r = result.x.numpy() - a
    gradient = np.sinh(r) + A @ r  # numpy, not autograd
    assert np.linalg.norm(r) <= np.linalg.norm(gradient) + 1e-15
    assert np.abs(r).max() < 1e-11


def _steep_cosh(scale=1e10, d=5, seed=4):
    """f = s Σ cosh(Mx - c): minimizer x* = M⁻¹c, Hessian s MᵀM at x*. With s = 1e10 the
    gradient s Mᵀ sinh(Mx - c) cannot fall below about s eps |c| ~ 1e-6 in floating point."""
    rng = np.random.default_rng(seed)
    M = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    c = rng.uniform(0.5, 2.0, size=d)
    Mt, ct = torch.as_tensor(M), torch.as_tensor(c)
    return (lambda x: scale * torch.cosh(Mt @ x - ct).sum()), np.linalg.solve(M, c), M


@pytest.mark.parametrize("method", ["newton", "newton-cg"])
def test_the_default_tolerance_is_met_at_rounding_when_sqrt_eps_is_out_of_reach(method):
    """Where max|grad| <= sqrt(eps) cannot be reached in floating point, the default
    tolerance accepts the gradient's rounding floor when the Newton step there is within
    100 eps max(1, max|x|); an explicit tol stays strict and warns."""
    f, minimizer, M = _steep_cosh()
    assert np.linalg.cond(M) < 10  # so that x* = M⁻¹c is accurate to a few eps
    result = pc.minimize(f, torch.zeros(5), method=method)
    assert result.converged, result.message
    assert "converged to rounding" in result.message
    assert float(result.grad.abs().max()) > math.sqrt(np.finfo(float).eps)
    scale = max(1.0, np.abs(minimizer).max())
    assert np.abs(result.x.numpy() - minimizer).max() <= 200 * np.finfo(float).eps * scale
    with pytest.warns(ConvergenceWarning, match="floor that rounding leaves"):
        strict = pc.minimize(f, torch.zeros(5), method=method, tol=1e-8)
    assert not strict.converged
    assert np.abs(strict.x.numpy() - minimizer).max() <= 200 * np.finfo(float).eps * scale


def _pima():
    data = np.loadtxt(ROOT / "examples" / "data" / "pima_standardized.dat")
    y = data[:, 0]
    X = np.hstack([np.ones((len(y), 1)), data[:, 1:]])
    return X, y


def test_newton_newton_cg_and_lbfgs_find_the_logistic_regression_map():
    """MAP of a Bayesian logistic regression on the Pima data, prior N(0, 1/tau) with tau = 1.
    Reference: plain Newton in numpy, checked by its own gradient. Each method's answer is
    held to what its tolerance guarantees: ||x - x*|| <= 2 ||∇f(x)|| / λ_min(H)."""
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

    reference = _numpy_newton(neg_log_joint_grad_np, neg_log_joint_hess_np, np.zeros(X.shape[1]))
    assert np.abs(neg_log_joint_grad_np(reference)).max() < 1e-10
    smallest = float(np.linalg.eigvalsh(neg_log_joint_hess_np(reference))[0])
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def neg_log_joint(w):
        return pc.core.bernoulli_nll(yt, Xt @ w) + 0.5 * tau * w @ w

    for method in ["newton", "newton-cg", "lbfgs"]:
        result = pc.minimize(neg_log_joint, torch.zeros(X.shape[1]), method=method)
        assert result.converged, (method, result.message)
        gradient = neg_log_joint_grad_np(result.x.numpy())
        error = np.linalg.norm(result.x.numpy() - reference)
        assert error <= _distance_bound(gradient, smallest) + 1e-12, method
        assert error < 1e-4 if method == "lbfgs" else error < 1e-7, method
        assert float(result.fun) == pytest.approx(neg_log_joint_np(reference), rel=1e-12)


@pytest.mark.parametrize("method", ["newton", "newton-cg"])
def test_an_unreachable_tolerance_stops_at_the_rounding_floor_and_warns(method):
    """tol = 0 on the Pima logistic regression: the method stops once a full step no longer
    reduces the gradient (near 1e-14), a few iterations after max|grad| <= 1e-10, not at
    max_iter."""
    X, y = _pima()
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def neg_log_joint(w):
        return pc.core.bernoulli_nll(yt, Xt @ w) + 0.5 * w @ w

    x0 = torch.zeros(X.shape[1])
    converged = pc.minimize(neg_log_joint, x0, method=method, tol=1e-10)
    with pytest.warns(ConvergenceWarning, match="floor that rounding leaves"):
        result = pc.minimize(neg_log_joint, x0, method=method, tol=0.0)
    assert not result.converged
    assert result.nit <= converged.nit + 5
    gradient = X.T @ (expit(X @ result.x.numpy()) - y) + result.x.numpy()
    assert np.abs(gradient).max() < 1e-11


def test_newton_cg_solves_a_100k_dimensional_strictly_convex_quadratic():
    """f(x) = ½ Σ a_i x_i² + ½ Σ (x_{i+1} - x_i)² - bᵀx: a tridiagonal SPD system, d = 100,000."""
    d = 100_000
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1.0, 10.0, size=d), rng.normal(size=d)
    at, bt = torch.as_tensor(a), torch.as_tensor(b)

    def f(x):
        return 0.5 * (at * x * x).sum() + 0.5 * ((x[1:] - x[:-1]) ** 2).sum() - bt @ x

    result = pc.minimize(f, torch.zeros(d), method="newton-cg", tol=1e-8)
    assert result.converged, result.message
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
    assert result.converged
    assert float(result.x) == pytest.approx(1.0, abs=1e-9)
    assert "modified Hessian" in result.message


def test_newton_backtracks_out_of_the_domain_of_log():
    """f = x - log x from x0 = 3: the full Newton step lands at x = -3 where f is NaN."""
    result = pc.minimize(lambda x: (x - torch.log(x)).sum(), torch.tensor([3.0]))
    assert result.converged
    assert float(result.x) == pytest.approx(1.0, abs=1e-9)


def test_newton_refuses_to_call_a_saddle_point_a_minimum():
    """f = x² - y² from (1, 0): y stays 0 and Newton ends at the saddle (0, 0)."""
    with pytest.warns(ConvergenceWarning, match="smallest eigenvalue -2"):
        result = pc.minimize(lambda z: z[0] ** 2 - z[1] ** 2, torch.tensor([1.0, 0.0]))
    assert not result.converged


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
        assert result.converged, result.message
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
    assert result.converged and "budget" in result.message
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
    for method in METHODS:
        with pytest.raises(
            ValueError, match=r"fun must return a 0-d tensor \(a scalar\), got \(2,\)"
        ):
            pc.minimize(lambda x: x**2, torch.ones(2), method=method, options=_sgd_rate(method))
        with pytest.raises(ValueError, match=r"fun must return a 0-d tensor .* got float"):
            pc.minimize(lambda x: 1.0, torch.ones(2), method=method, options=_sgd_rate(method))


def _sgd_rate(method):
    return {"lr": 0.1} if method == "sgd" else None


@pytest.mark.parametrize("method", METHODS)
def test_a_start_where_the_objective_or_its_gradient_is_not_finite_names_x0(method):
    """One check for every method (core.evaluation.check_finite_start): the figure, the
    argument and the point."""
    options = _sgd_rate(method)
    with pytest.raises(
        NonFiniteError, match=r"the objective is inf at x0 = \[0\.0, 1\.0\]"
    ) as info:
        pc.minimize(
            lambda x: -torch.log(x).sum(), torch.tensor([0.0, 1.0]), method=method, options=options
        )
    assert info.value.where == "x0" and info.value.value == math.inf
    with pytest.raises(
        NonFiniteError, match=r"gradient of the objective at x0 is not finite: grad\[1\] = inf"
    ) as info:
        pc.minimize(
            lambda x: torch.sqrt(x).sum(), torch.tensor([1.0, 0.0]), method=method, options=options
        )
    assert info.value.where == "x0" and info.value.value == math.inf


@pytest.mark.parametrize(
    "x0", [torch.zeros(3, dtype=torch.complex128), torch.tensor([0.0, math.nan, 0.0])]
)
def test_conjugate_gradient_refuses_a_complex_or_non_finite_x0(x0):
    calls = []

    def matvec(v):
        calls.append(1)
        return 2.0 * v

    with pytest.raises((TypeError, ValueError), match=r"x0 must be (real|finite)"):
        pc.conjugate_gradient(matvec, torch.ones(3), x0=x0)
    assert not calls


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
    with pytest.raises(ValueError, match="tolerance_grad is tol"):
        pc.minimize(
            lambda x: (x**2).sum(), torch.ones(2), method="lbfgs", options={"tolerance_grad": 0}
        )


class _Counting:
    """An objective that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return (x**2).sum()


# method -> (an option it takes, and one from another method it does not)
_OPTION_EXAMPLES = {
    "newton": (None, "cg_max_iter"),
    "newton-cg": ("cg_max_iter", "history_size"),
    "lbfgs": ("history_size", "momentum"),
    "adam": ("betas", "history_size"),
    "sgd": ("momentum", "betas"),
}


@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_option_is_a_value_error_listing_the_methods_options_before_work(method):
    """torch.optim's constructors would raise TypeError from inside torch; minimize names
    the option and lists the valid ones (for the torch.optim methods, the constructor's own
    keywords, read from its signature), before fun is called."""
    valid, foreign = _OPTION_EXAMPLES[method]
    fun = _Counting()
    options = {foreign: 1, **({"lr": 0.1} if method == "sgd" else {})}
    with pytest.raises(ValueError, match=rf"unknown options \['{foreign}'\] for method") as info:
        pc.minimize(fun, torch.ones(2), method=method, options=options)
    assert fun.calls == 0
    message = str(info.value)
    assert (valid is None and "valid: none" in message) or f"{valid}" in message
    if method in ("lbfgs", "adam", "sgd"):
        assert "params" not in message and "max_iter" not in message.split("valid:")[1]


def test_options_minimize_sets_itself_are_named():
    with pytest.raises(ValueError, match="max_iter is minimize's max_iter"):
        pc.minimize(lambda x: (x**2).sum(), torch.ones(2), method="lbfgs", options={"max_iter": 3})


BAD_MINIMIZE_INPUT = [
    ("fun not callable", dict(fun=3.0), TypeError, "fun must be a function"),
    ("complex x0", dict(x0=torch.ones(2, dtype=torch.complex128)), TypeError, "x0 must be real"),
    ("x0 a string", dict(x0="ab"), TypeError, "x0 must be a tensor"),
    ("x0 None", dict(x0=None), TypeError, "x0 must be a tensor"),
    ("float16 x0 for newton", dict(x0=torch.ones(2, dtype=torch.float16)), TypeError, "float16"),
    ("tol a string", dict(tol="1e-6"), TypeError, "tol must be a number"),
    ("tol NaN", dict(tol=math.nan), ValueError, "tol must be non-negative"),
    ("max_iter 2.5", dict(max_iter=2.5), ValueError, "max_iter must be an integer"),
    ("max_iter negative", dict(max_iter=-1), ValueError, "max_iter must be an integer >= 0"),
    ("callback not callable", dict(callback=3), TypeError, "callback must be a function"),
    ("options a list", dict(options=[("lr", 1.0)]), TypeError, "options must be a dict"),
    (
        "cg_max_iter 0",
        dict(method="newton-cg", options={"cg_max_iter": 0}),
        ValueError,
        "cg_max_iter must be an integer >= 1",
    ),
    (
        "cg_max_iter a string",
        dict(method="newton-cg", options={"cg_max_iter": "5"}),
        TypeError,
        "cg_max_iter must be a number",
    ),
]


@pytest.mark.parametrize(
    ("label", "arguments", "error", "match"),
    BAD_MINIMIZE_INPUT,
    ids=[case[0] for case in BAD_MINIMIZE_INPUT],
)
def test_bad_minimize_input_is_named_before_fun_is_called(label, arguments, error, match):
    fun = _Counting()
    call = {"fun": fun, "x0": torch.ones(2), **arguments}
    with pytest.raises(error, match=match):
        pc.minimize(call.pop("fun"), call.pop("x0"), **call)
    assert fun.calls == 0


def test_conjugate_gradient_names_bad_arguments():
    b = torch.ones(3)
    with pytest.raises(ValueError, match="rtol must be non-negative"):
        pc.conjugate_gradient(lambda v: v, b, rtol=math.nan)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 0"):
        pc.conjugate_gradient(lambda v: v, b, max_iter=-1)
    with pytest.raises(TypeError, match="b must be a tensor"):
        pc.conjugate_gradient(lambda v: v, [1.0, 2.0])
    with pytest.raises(TypeError, match="matvec must be a function"):
        pc.conjugate_gradient(b, b)
    with pytest.raises(ValueError, match=r"preconditioner must return the shape of b \(3,\)"):
        pc.conjugate_gradient(lambda v: 2 * v, b, preconditioner=lambda r: r[:1])


@pytest.mark.parametrize("method", ["newton", "newton-cg", "lbfgs"])
def test_rosenbrock_in_float32_at_the_default_tolerance_reaches_the_minimum(method):
    """torch's default dtype is float32; the default tolerance follows it (sqrt(eps32) =
    3.5e-4 for the Newton methods, eps32^(1/3) = 4.9e-3 for L-BFGS), which float32's
    rounding lets the gradient meet. From the classic start (-1.2, 1) every method reports
    success with x in float32; the gradient there, recomputed in float64 by scipy, is within
    the tolerance (plus float32's rounding of the gradient, about 1e-5 here), and x lies
    within the distance that gradient allows of x* = (1, 1)."""
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float32)
    result = pc.minimize(rosenbrock, x0, method=method)
    assert result.converged, result.message
    assert result.x.dtype == torch.float32
    eps = torch.finfo(torch.float32).eps
    tol = eps ** (1 / 3) if method == "lbfgs" else math.sqrt(eps)
    x = result.x.double().numpy()
    gradient = scipy.optimize.rosen_der(x)
    assert np.abs(gradient).max() <= tol + 1e-5
    distance = np.linalg.norm(x - 1.0)
    assert distance <= _distance_bound(gradient, _rosenbrock_smallest_curvature(np.ones(2)))
    assert distance < 1e-2


@pytest.mark.parametrize("method", METHODS)
def test_non_convergence_sets_converged_false_and_warns(method):
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
    assert not result.converged
    assert "max|grad|" in str(record[0].message)


def test_integer_x0_becomes_float64_and_float32_is_kept():
    assert pc.minimize(lambda x: ((x - 1) ** 2).sum(), [3, 4]).x.dtype == torch.float64
    x32 = pc.minimize(lambda x: ((x - 1) ** 2).sum(), torch.ones(2, dtype=torch.float32) * 3)
    assert x32.x.dtype == torch.float32 and x32.converged


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


def _stop_at_three_by_false(state):
    return None if state.nit < 3 else False


def _stop_at_three_by_stop_iteration(state):
    if state.nit >= 3:
        raise StopIteration


def _stop_at_three_by_numpy_false(state):
    return None if state.nit < 3 else np.bool_(False)


@pytest.mark.parametrize("method", ["newton", "newton-cg", "lbfgs", "adam"])
@pytest.mark.parametrize(
    "callback",
    [_stop_at_three_by_false, _stop_at_three_by_stop_iteration, _stop_at_three_by_numpy_false],
)
def test_a_callback_stops_by_returning_false_or_raising_stop_iteration(method, callback):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with pytest.warns(ConvergenceWarning, match="stopped by callback"):
            stopped = pc.minimize(
                rosenbrock, torch.tensor([-1.2, 1.0]), method=method, callback=callback
            )
    assert stopped.nit == 3 and not stopped.converged
    assert stopped.message.startswith("stopped by callback")


@pytest.mark.parametrize("method", ["newton", "lbfgs", "adam"])
def test_a_callback_returning_none_or_true_follows_the_convention(method):
    """None continues (the run is the one without a callback); True still stops, with a
    DeprecationWarning that says what to return instead."""
    options = {"lr": 0.01} if method == "adam" else None
    run = {"method": method, "max_iter": 40, "options": options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = pc.minimize(rosenbrock, torch.tensor([-1.2, 1.0]), **run)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            continued = pc.minimize(
                rosenbrock, torch.tensor([-1.2, 1.0]), callback=lambda state: None, **run
            )
        with pytest.warns(DeprecationWarning, match="return False or raise StopIteration"):
            stopped = pc.minimize(
                rosenbrock,
                torch.tensor([-1.2, 1.0]),
                callback=lambda state: state.nit >= 3 or None,
                **run,
            )
    assert continued.nit == plain.nit and torch.equal(continued.x, plain.x)
    assert stopped.nit == 3 and not stopped.converged


def test_a_callback_returning_something_else_is_a_type_error():
    with pytest.raises(TypeError, match=r"callback must return None \(continue\), False"):
        pc.minimize(rosenbrock, torch.tensor([-1.2, 1.0]), callback=lambda state: 1)


# --------------------------------------------------------------------------------------
# conjugate_gradient stopped at non-positive curvature (truncated Newton, TRPO)


def test_conjugate_gradient_stopped_at_negative_curvature_returns_the_hand_computed_iterate():
    """A = diag(2, -1), b = (1, 1), by hand: p0 = b, p0'Ap0 = 1, α = 2, x1 = (2, 2),
    r1 = (-3, 3), β = 9, p1 = (6, 12), p1'Ap1 = -72, p1'p1 = 180: stop at iteration 1 with
    x = (2, 2) and curvature -0.4; without the option the same figure is raised."""
    A = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    b = torch.ones(2)
    stopped = pc.conjugate_gradient(lambda v: A @ v, b, stop_on_negative_curvature=True)
    assert stopped.negative_curvature and not stopped.converged and stopped.nit == 1
    torch.testing.assert_close(stopped.x, torch.tensor([2.0, 2.0]), rtol=1e-15, atol=0)
    assert stopped.curvature == pytest.approx(-0.4, rel=1e-14)
    with pytest.raises(NotPositiveDefiniteError) as info:
        pc.conjugate_gradient(lambda v: A @ v, b)
    assert info.value.min_eigenvalue == stopped.curvature
    spd = pc.conjugate_gradient(lambda v: v * 2, b, stop_on_negative_curvature=True)
    assert spd.converged and spd.curvature is None and not spd.negative_curvature


def _indefinite(n, negatives, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = np.concatenate(
        [-np.geomspace(0.5, 5.0, negatives), np.geomspace(1.0, 100.0, n - negatives)]
    )
    return (Q * eigenvalues) @ Q.T, Q, eigenvalues, rng


@pytest.mark.parametrize(
    ("n", "negatives", "seed"), [(20, 1, 0), (20, 5, 1), (50, 2, 2), (50, 10, 3), (8, 1, 4)]
)
def test_conjugate_gradient_truncation_on_an_indefinite_matrix_is_a_krylov_descent_step(
    n, negatives, seed
):
    """Stopped at the first p with p'Ap <= 0 after k >= 1 steps, x minimizes
    q(x) = ½x'Ax - b'x over the Krylov space span(b, Ab, ..., A^(k-1) b) (checked with a
    numpy Arnoldi basis), so b'x > 0 and q(x) < 0: a descent direction; the reported curvature
    p'Ap/p'p lies in [λ_min(A), 0]. b is weighted towards the positive eigenvectors so that CG
    takes some steps first."""
    A, Q, eigenvalues, rng = _indefinite(n, negatives, seed)
    weights = np.where(eigenvalues > 0, 1.0, 0.05) * rng.normal(size=n)
    b = Q @ weights
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    result = pc.conjugate_gradient(lambda v: At @ v, bt, stop_on_negative_curvature=True)
    assert result.negative_curvature and result.nit >= 1
    assert eigenvalues.min() - 1e-12 <= result.curvature <= 0
    x = result.x.numpy()
    assert b @ x > 0 and 0.5 * x @ A @ x - b @ x < 0
    basis = [b / np.linalg.norm(b)]  # Arnoldi, orthogonalized twice: a stable Krylov basis
    for _ in range(result.nit - 1):
        w = A @ basis[-1]
        for _ in range(2):
            w = w - np.stack(basis, axis=1) @ (np.stack(basis) @ w)
        basis.append(w / np.linalg.norm(w))
    V = np.stack(basis, axis=1)
    best = V @ np.linalg.solve(V.T @ A @ V, V.T @ b)
    # CG without reorthogonalization loses orthogonality in floating point: after 15 steps
    # on (20, 1, 0) the projected gradient V'(b - Ax) of its iterate is 2e-6 of ||b||, so it
    # matches the exact Krylov minimizer to 3e-8 relative (how closely depends on BLAS's
    # rounding); 1e-6 leaves a margin of 30
    np.testing.assert_allclose(x, best, rtol=0, atol=1e-6 * np.linalg.norm(best))


def test_conjugate_gradient_negative_curvature_on_the_first_direction_returns_the_start():
    """b'Ab < 0: nothing to keep; x is the start (zeros) and the curvature is b'Ab/b'b."""
    A = torch.diag(torch.tensor([1.0, -4.0]))
    b = torch.tensor([1.0, 1.0])
    result = pc.conjugate_gradient(lambda v: A @ v, b, stop_on_negative_curvature=True)
    assert result.nit == 0 and result.negative_curvature
    assert torch.equal(result.x, torch.zeros(2))
    assert result.curvature == pytest.approx(-1.5, rel=1e-15)


def test_conjugate_gradient_names_an_overflow_instead_of_returning_a_wrong_answer():
    """Finite input whose figures overflow float64: ||b|| (b = 1e160, 4 entries; it used to
    count as converged at x = 0 against an infinite tolerance) and p'Ap (A = 1e10 I,
    b = 1e150: ||b|| and A b are finite): errors with the figure, not a wrong solution."""
    with pytest.raises(NonFiniteError, match=r"\|\|b\|\|_2 = inf"):
        pc.conjugate_gradient(lambda v: v, torch.full((4,), 1e160, dtype=torch.float64))
    with pytest.raises(NonFiniteError, match="p'Ap = inf at iteration 0"):
        pc.conjugate_gradient(lambda v: 1e10 * v, torch.full((4,), 1e150, dtype=torch.float64))
