"""laplace speaks the conventions page's dialect: structure=/curvature=/rank= shared by fit
and fit_module, seeds (int repeats, Generator advances, None is fresh entropy), n_samples,
one Predictive type, deprecated old names with the same values, the batched fitted-scale
function and the shared start-point check, each against closed forms or numpy."""

import math
import warnings

import numpy as np
import pytest
import scipy.special
import torch
from torch import nn

import probcalc as pc
from probcalc.core import NonFiniteError
from probcalc.core.evaluation import check_finite_start
from probcalc.laplace import Curvature, Predictive, Structure
from probcalc.laplace.eigen import top_eigenpairs

fit, fit_module = pc.laplace.fit, pc.laplace.fit_module
SIGMA, ALPHA = 0.5, 2.0


def _regression(n=40, d=4, seed=0):
    """y = Xβ + ε, ε ~ N(0, σ²), β ~ N(0, I/α): the log likelihood, and the posterior
    precision and mean and the log evidence in closed form."""
    rng = np.random.default_rng(seed)
    X = torch.as_tensor(rng.normal(size=(n, d)))
    y = X @ torch.as_tensor(rng.normal(size=d)) + SIGMA * torch.as_tensor(rng.normal(size=n))

    def log_likelihood(beta):
        return torch.distributions.Normal(X @ beta, SIGMA).log_prob(y).sum()

    precision = ALPHA * torch.eye(d) + X.T @ X / SIGMA**2
    mean = torch.linalg.solve(precision, X.T @ y / SIGMA**2)
    evidence = torch.distributions.MultivariateNormal(
        torch.zeros(n), SIGMA**2 * torch.eye(n) + X @ X.T / ALPHA
    ).log_prob(y)
    return X, y, log_likelihood, precision, mean, float(evidence)


def _linear_model(X, mean):
    model = nn.Linear(X.shape[1], 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(mean[None, :])
    return model


def _deprecated(call):
    """call()'s value, asserting that it warned DeprecationWarning (and nothing else)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    kinds = {w.category for w in caught}
    assert kinds == {DeprecationWarning}, [str(w.message) for w in caught]
    return value, [str(w.message) for w in caught]


# --------------------------------------------------------------------------------------
# structure=, curvature=, rank=


@pytest.mark.parametrize("structure", ["full", "diag", "lowrank"])
def test_hessian_is_the_deprecated_name_of_structure_with_the_same_fit(structure):
    _, _, log_likelihood, _, _, _ = _regression()
    options = {"prior_precision": ALPHA, "rank": 2, "seed": 0}
    new = fit(log_likelihood, torch.zeros(4), structure=structure, **options)
    old, messages = _deprecated(
        lambda: fit(log_likelihood, torch.zeros(4), hessian=structure, **options)
    )
    assert any("use structure=" in m for m in messages)
    assert old.structure == new.structure == structure
    assert torch.equal(old.log_evidence, new.log_evidence)
    assert torch.equal(old.covariance, new.covariance)
    with pytest.raises(TypeError, match="both 'hessian' and its new name 'structure'"):
        fit(log_likelihood, torch.zeros(4), hessian="full", structure="full")


def test_fit_and_fit_module_share_one_vocabulary():
    """The same Structure and Curvature members work in both; each refuses the other's own
    choice by name, before any work."""
    X, y, log_likelihood, _, mean, evidence = _regression()
    model = _linear_model(X, mean)
    for structure in (Structure.FULL, "full", Structure.DIAG):
        la = fit(log_likelihood, torch.zeros(4), prior_precision=ALPHA, structure=structure)
        net = fit_module(
            model,
            (X, y[:, None]),
            prior_precision=ALPHA,
            sigma_noise=SIGMA,
            structure=structure,
            curvature=Curvature.HESSIAN,
        )
        assert la.structure == net.structure == Structure(structure).value
        if Structure(structure) is Structure.FULL:
            assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-9)
            assert float(net.log_evidence) == pytest.approx(evidence, abs=1e-9)
    exact = fit(log_likelihood, torch.zeros(4), prior_precision=ALPHA, curvature="hessian")
    assert float(exact.log_evidence) == pytest.approx(evidence, abs=1e-9)
    calls = []

    def counted(beta):
        calls.append(1)
        return log_likelihood(beta)

    cases = [
        ({"structure": "last_layer"}, "structure='last_layer' keeps a network's last layer"),
        ({"curvature": "ggn"}, "curvature='ggn' linearizes a model's outputs"),
        ({"curvature": "fisher"}, "unknown curvature 'fisher'; valid choices are 'hessian'$"),
        ({"structure": 3}, "unknown structure 3; valid choices are 'full', 'diag', 'lowrank'$"),
    ]
    for arguments, match in cases:
        with pytest.raises(ValueError, match=match):
            fit(counted, torch.zeros(4), prior_precision=ALPHA, **arguments)
    assert not calls
    with pytest.raises(ValueError, match="'full', 'diag', 'lowrank', 'last_layer'"):
        fit_module(model, (X, y[:, None]), structure="kron")


def test_module_structure_is_the_deprecated_name_of_structure():
    old, messages = _deprecated(lambda: pc.laplace.ModuleStructure)
    assert old is Structure
    assert "use probcalc.laplace.Structure" in messages[0]


def _counting_batches(X, y, seen):
    """The data as a one-shot iterable that records when fit_module starts reading it."""
    seen.append("read")
    yield X, y


@pytest.mark.parametrize("rank", [0, 5, 1.5, None, True])
def test_one_rank_rule_refuses_the_same_ranks_before_any_work(rank):
    """1 <= rank <= d for both (d = 4 here): the same message from fit and fit_module,
    before the mode search or the Jacobians."""
    X, y, log_likelihood, _, mean, _ = _regression()
    calls, seen = [], []

    def counted(beta):
        calls.append(1)
        return log_likelihood(beta)

    message = rf"structure='lowrank' needs rank= an integer with 1 <= rank <= d = 4, got {rank}$"
    with pytest.raises(ValueError, match=message):
        fit(counted, torch.zeros(4), prior_precision=ALPHA, structure="lowrank", rank=rank)
    batches = _counting_batches(X, y[:, None], seen)
    with pytest.raises(ValueError, match=message):
        fit_module(_linear_model(X, mean), batches, structure="lowrank", rank=rank)
    assert not calls and not seen


@pytest.mark.parametrize("rank", [3, 4])
def test_rank_d_keeps_every_eigenpair_in_both(rank):
    """rank = d and d - 1 (dense eigh: ARPACK cannot go there) are allowed by both. rank = d
    gives the exact evidence; rank = d - 1 replaces the smallest eigenvalue λ of X'X/σ² by
    0, so the log evidence rises by ½ log((α + λ) / α) (the mode is exact either way)."""
    X, y, log_likelihood, _, mean, evidence = _regression()
    smallest = float(np.linalg.eigvalsh(X.numpy().T @ X.numpy() / SIGMA**2)[0])
    if rank == 3:
        evidence += 0.5 * math.log((ALPHA + smallest) / ALPHA)
    la = fit(log_likelihood, torch.zeros(4), prior_precision=ALPHA, structure="lowrank", rank=rank)
    net = fit_module(
        _linear_model(X, mean),
        (X, y[:, None]),
        prior_precision=ALPHA,
        sigma_noise=SIGMA,
        structure="lowrank",
        rank=rank,
    )
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-9)
    assert float(net.log_evidence) == pytest.approx(evidence, abs=1e-9)


# --------------------------------------------------------------------------------------
# seeds


def _correlated_quadratic(d=2100, c=0.002):
    """-½ θ'(diag(a) + c 11')θ + b'θ: above d = 2048 "diag" is estimated from Rademacher
    probes, and the c 11' term makes the estimate depend on them (exact when c = 0)."""
    rng = np.random.default_rng(0)
    a, b = torch.as_tensor(rng.uniform(1.0, 2.0, d)), torch.as_tensor(rng.normal(size=d))

    def log_joint(theta):
        return -0.5 * (a * theta * theta).sum() - 0.5 * c * theta.sum() ** 2 + b @ theta

    return log_joint, a, c


def _diag_fit(seed):
    log_joint, _, _ = _correlated_quadratic()
    options = {"structure": "diag", "optimizer": "newton-cg", "n_probes": 4}
    return fit(log_joint, torch.zeros(2100), seed=seed, **options).precision


def _fitted():
    _, _, log_likelihood, _, _, _ = _regression()
    return fit(log_likelihood, torch.zeros(4), prior_precision=ALPHA)


def _classifier():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    X, y = torch.randn(30, 2), torch.randint(0, 3, (30,))
    return fit_module(model, (X, y), likelihood="classification", prior_precision=2.0), X


_LA = {}


def _cached(key, build):
    if key not in _LA:
        _LA[key] = build()
    return _LA[key]


DRAWS = {
    "fit, diag probes": _diag_fit,
    "LaplaceApproximation.sample": lambda seed: _cached("fit", _fitted).sample(6, seed=seed),
    "LaplaceApproximation.predictive mc": lambda seed: (
        _cached("fit", _fitted).predictive(torch.sin, "mc", n_samples=8, seed=seed).mean
    ),
    "ModuleLaplace.predictive mc": lambda seed: (
        _cached("net", _classifier)[0]
        .predictive(_cached("net", _classifier)[1][:3], link_approx="mc", n_samples=5, seed=seed)
        .mean
    ),
}


@pytest.mark.parametrize("name", DRAWS)
def test_an_int_seed_repeats_none_is_fresh_and_a_generator_advances(name):
    draw = DRAWS[name]
    reference = draw(7)
    state = torch.get_rng_state()
    assert torch.equal(draw(7), reference)
    assert not torch.equal(draw(None), draw(None))
    first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = draw(first), draw(first)
    assert not torch.equal(a, b)  # the generator moved on
    assert torch.equal(draw(second), a)  # and the same seed replays its sequence
    assert torch.equal(torch.get_rng_state(), state)  # torch's global state is untouched
    with pytest.raises(TypeError, match=r"seed must be an int, a torch\.Generator or None"):
        draw(np.random.default_rng(0))


def test_the_stochastic_diagonal_is_unbiased_for_its_seed():
    """diag(H) estimated from probes v: mean_k v_k ⊙ H v_k = a + c v_i Σ_j v_j averaged: the
    exact diagonal is a + c; over 4 probes the error is c |mean_k v_ki Σ_j v_kj - 1|, of
    order c sqrt(d / 4)."""
    _, a, c = _correlated_quadratic()
    estimate = _diag_fit(0)
    error = (estimate - (a + c)).abs()
    assert float(error.max()) < 6 * c * math.sqrt(2100 / 4)
    assert float(error.max()) > 0  # the probes do not see the exact diagonal


def test_lowrank_eigenpairs_repeat_for_an_int_seed_and_match_numpy():
    """ARPACK starts from a random vector: an int seed gives the same eigenpairs bit for
    bit, in fit and fit_module; every seed gives numpy's eigenvalues."""
    X, y, log_likelihood, _, mean, _ = _regression(n=60, d=12)
    options = {"prior_precision": ALPHA, "structure": "lowrank", "rank": 3}
    runs = [fit(log_likelihood, torch.zeros(12), seed=seed, **options) for seed in (5, 5, None)]
    values = [run.precision_structure.eigenvalues for run in runs]
    assert torch.equal(values[0], values[1])
    top = np.linalg.eigvalsh(X.numpy().T @ X.numpy() / SIGMA**2)[-3:]
    for v in values:
        np.testing.assert_allclose(v.numpy(), top, rtol=1e-10)
    model = _linear_model(X, mean)
    nets = [
        fit_module(
            model,
            (X, y[:, None]),
            prior_precision=ALPHA,
            sigma_noise=SIGMA,
            structure="lowrank",
            rank=3,
            seed=seed,
        )
        for seed in (5, 5, torch.Generator().manual_seed(2))
    ]
    assert torch.equal(nets[0].eigenvalues, nets[1].eigenvalues)
    for net in nets:  # G = X'X for a linear model with unit noise
        np.testing.assert_allclose(net.eigenvalues.numpy(), top * SIGMA**2, rtol=1e-10)


def test_top_eigenpairs_keep_the_inputs_dtype_and_match_numpy():
    rng = np.random.default_rng(4)
    B = rng.normal(size=(30, 30))
    A = B @ B.T
    reference = np.linalg.eigh(A)
    scale = reference[0][-1]
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        matrix = torch.as_tensor(A, dtype=dtype)
        like = torch.zeros(30, dtype=dtype)
        for rank in (4, 29):  # ARPACK, then the dense path
            values, vectors = top_eigenpairs(lambda v, m=matrix: m @ v, rank, like, seed=0)
            assert values.dtype == vectors.dtype == dtype
            assert values.device == vectors.device == like.device
            np.testing.assert_allclose(values.numpy(), reference[0][-rank:], atol=rtol * scale)
            # A V = V Λ with V orthonormal
            V, lam = vectors.double().numpy(), values.double().numpy()
            assert np.abs(A @ V - V * lam).max() <= 10 * rtol * scale
            np.testing.assert_allclose(V.T @ V, np.eye(rank), atol=10 * rtol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lowrank_eigenpairs_stay_on_the_models_device():
    X, y, _, _, mean, _ = _regression(n=60, d=12)
    top = np.linalg.eigvalsh(X.numpy().T @ X.numpy())[-3:]
    X, y = X.cuda(), y.cuda()
    model = _linear_model(X.cpu(), mean).cuda()
    options = {"prior_precision": ALPHA, "structure": "lowrank", "rank": 3, "seed": 0}
    net = fit_module(model, (X, y[:, None]), sigma_noise=SIGMA, **options)
    assert net.eigenvalues.is_cuda and net.eigenvectors.is_cuda
    np.testing.assert_allclose(net.eigenvalues.cpu().numpy(), top, rtol=1e-10)
    assert net.predictive(X[:3]).variance.is_cuda

    def log_likelihood(beta):
        return torch.distributions.Normal(X @ beta, SIGMA).log_prob(y).sum()

    la = fit(log_likelihood, torch.zeros(12, device="cuda"), **options)
    values = la.precision_structure.eigenvalues
    assert values.is_cuda and la.precision_structure.vectors.is_cuda
    np.testing.assert_allclose(values.cpu().numpy(), top / SIGMA**2, rtol=1e-10)


# --------------------------------------------------------------------------------------
# n_samples


def test_n_is_the_deprecated_name_of_n_samples_in_sample():
    la = _fitted()
    new = la.sample(n_samples=5, seed=0)
    old, messages = _deprecated(lambda: la.sample(n=5, seed=0))
    assert "use n_samples=" in messages[0]
    assert torch.equal(old, new)
    assert torch.equal(la.sample(5, seed=0), new)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 0, got -1"):
        la.sample(-1)


# --------------------------------------------------------------------------------------
# one Predictive


def test_predictive_is_one_type_for_fit_and_fit_module():
    """A linear model: fit's predictive of f(β) = X_new β and fit_module's regression
    predictive are the closed-form x Σ x' (fit_module adding the noise σ²)."""
    X, y, log_likelihood, precision, mean, _ = _regression()
    X_new = torch.as_tensor(np.random.default_rng(9).normal(size=(3, 4)))
    covariance = X_new @ torch.linalg.solve(precision, X_new.T)
    la = fit(log_likelihood, torch.zeros(4), prior_precision=ALPHA)
    of_f = la.predictive(lambda beta: X_new @ beta)
    net = fit_module(
        _linear_model(X, mean), (X, y[:, None]), prior_precision=ALPHA, sigma_noise=SIGMA
    )
    of_y = net.predictive(X_new)
    assert isinstance(of_f, Predictive) and isinstance(of_y, Predictive)
    assert torch.allclose(of_f.mean, X_new @ mean, atol=1e-12)
    assert torch.allclose(of_f.covariance, covariance, atol=1e-12)
    assert torch.allclose(of_f.variance, torch.diagonal(covariance), atol=1e-12)
    assert of_y.mean.shape == of_y.variance.shape == (3, 1)
    assert of_y.covariance.shape == (3, 1, 1)
    assert torch.allclose(of_y.mean[:, 0], X_new @ mean, atol=1e-12)
    noisy = torch.diagonal(covariance) + SIGMA**2
    assert torch.allclose(of_y.variance[:, 0], noisy, atol=1e-12)
    assert torch.allclose(of_y.covariance[:, 0, 0], noisy, atol=1e-12)
    # the old access: unpacking into (mean, variance), deprecated
    (mean_old, variance_old), messages = _deprecated(lambda: tuple(net.predictive(X_new)))
    assert "use .mean and .variance" in messages[0]
    assert torch.equal(mean_old, of_y.mean) and torch.equal(variance_old, of_y.variance)


def test_classification_predictive_is_the_labels_mean_and_covariance():
    net, X = _classifier()
    predictive = net.predictive(X[:4])
    p = predictive.mean.numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    expected = np.stack([np.diag(row) - np.outer(row, row) for row in p])
    np.testing.assert_allclose(predictive.covariance.numpy(), expected, atol=1e-15)
    np.testing.assert_allclose(predictive.variance.numpy(), p * (1 - p), atol=1e-15)


def test_bad_mc_options_fail_before_work_whatever_the_link():
    net, X = _classifier()
    mean, covariance = net.output_moments(X[:2])
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 0"):
        pc.laplace.expected_softmax(mean, covariance, n_samples=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        pc.laplace.expected_softmax(mean, covariance, seed="0")
    with pytest.raises(ValueError, match="n_samples"):
        net.predictive(X[:2], n_samples=0)


# --------------------------------------------------------------------------------------
# the fitted-scale function, one point or a batch


def _gamma_poisson():
    """y_i ~ Poisson(λ), λ ~ Gamma(a, rate b), and μ ~ N(0, 1) apart: a log joint of
    (μ, λ) that takes one point (2,) or a batch (n, 2), and its log evidence in closed
    form (negative binomial; μ integrates to 1)."""
    a, b = 2.0, 1.0
    y = torch.tensor([3.0, 5.0, 2.0, 4.0, 6.0, 3.0])

    def log_joint(theta):
        mu, lam = theta[..., 0], theta[..., 1]
        poisson = torch.distributions.Poisson(lam[..., None]).log_prob(y).sum(-1)
        return (
            torch.distributions.Normal(0.0, 1.0).log_prob(mu)
            + torch.distributions.Gamma(a, b).log_prob(lam)
            + poisson
        )

    n, total = len(y), float(y.sum())
    exact = (
        a * math.log(b)
        - math.lgamma(a)
        + math.lgamma(a + total)
        - (a + total) * math.log(b + n)
        - sum(math.lgamma(v + 1) for v in y.tolist())
    )
    return log_joint, exact


def _by_hand(log_joint, phi, kinds, prior):
    """log_joint(T(φ)) + Σ log|T_i'(φ_i)| + log N(φ | 0, diag(1/prior)), one point, in
    Python floats: T = identity, exp or the logistic function per coordinate."""
    theta, jacobian = [], 0.0
    for value, kind in zip(phi, kinds, strict=True):
        if kind == "positive":
            theta.append(math.exp(value))
            jacobian += value
        elif kind == "unit":
            theta.append(scipy.special.expit(value))
            jacobian += math.log(scipy.special.expit(value) * scipy.special.expit(-value))
        else:
            theta.append(value)
            jacobian += 0.0
    total = float(log_joint(torch.tensor(theta))) + jacobian
    if prior is not None:
        total += sum(
            -0.5 * p * v * v + 0.5 * math.log(p / (2 * math.pi))
            for p, v in zip(prior, phi, strict=True)
        )
    return total


@pytest.mark.parametrize("prior_precision", [None, 0.5])
def test_log_joint_on_fitted_scale_takes_one_point_or_a_batch(prior_precision):
    log_joint, _ = _gamma_poisson()

    def on_unit(theta):  # λ ∈ (0, 1) here, to exercise the logit scale too
        return log_joint(theta * torch.tensor([1.0, 4.0]))

    for kinds, function, start in (
        ([None, "positive"], log_joint, [0.5, 2.0]),
        ([None, "unit"], on_unit, [0.5, 0.5]),
    ):
        la = fit(function, torch.tensor(start), constraints=kinds, prior_precision=prior_precision)
        fitted = la.log_joint_on_fitted_scale(function)
        points = torch.as_tensor(np.random.default_rng(1).normal(size=(5, 2)))
        batch = fitted(points)
        assert batch.shape == (5,)
        prior = None if prior_precision is None else [prior_precision] * 2
        for row, value in zip(points, batch, strict=True):
            single = fitted(row)
            assert single.shape == ()
            expected = _by_hand(function, row.tolist(), kinds, prior)
            assert float(single) == pytest.approx(expected, abs=1e-10)
            assert float(value) == pytest.approx(expected, abs=1e-10)


def test_the_batched_fitted_scale_function_feeds_importance_sampling():
    """exp of the fitted-scale function integrates to the evidence: importance sampling
    from a Student-t at the fit, on the batched function as it is, matches the closed
    form within four standard errors."""
    log_joint, exact = _gamma_poisson()
    la = fit(log_joint, torch.tensor([0.0, 2.0]), constraints=[None, "positive"])
    proposal = pc.mc.proposals.MultivariateStudentT(
        5.0, la.mode, torch.linalg.cholesky(la.covariance)
    )
    target = la.log_joint_on_fitted_scale(log_joint)
    result = pc.mc.importance_sampling(target, proposal, 4000, seed=0)
    assert abs(float(result.log_evidence) - exact) < 4 * float(result.stderr)
    assert float(result.stderr) < 0.01


# --------------------------------------------------------------------------------------
# one start-point check


def test_one_start_check_names_the_value_the_point_and_the_gradient():
    point = torch.tensor([-1.0, 2.0])
    with pytest.raises(
        NonFiniteError, match=r"^f is nan at x0 = \[-1.0, 2.0\]; start where"
    ) as info:
        check_finite_start(torch.tensor(math.nan), what="f", where="x0", point=point)
    assert math.isnan(info.value.value) and info.value.where == "x0"
    gradient = torch.tensor([0.5, -math.inf])
    with pytest.raises(
        NonFiniteError, match=r"gradient of f at x0 is not finite: grad\[1\] = -inf"
    ):
        check_finite_start(torch.tensor(1.0), what="f", where="x0", point=point, gradient=gradient)
    check_finite_start(torch.tensor(1.0), what="f", where="x0", point=point, gradient=point)
    # fit and evidence report through it, with theta0 as the user gave it
    for call in (lambda lj: fit(lj, point), lambda lj: pc.evidence(lj, theta0=point)):
        with pytest.raises(NonFiniteError, match=r"log_joint is nan at theta0 = \[-1.0, 2.0\]"):
            call(lambda t: torch.log(t).sum())
    with pytest.raises(NonFiniteError, match=r"at theta0 = \[0.0, 2.0\]") as info:
        fit(lambda t: torch.log(t).sum(), torch.tensor([0.0, 2.0]), constraints=[None, "positive"])
    assert info.value.value == -math.inf


@pytest.mark.parametrize("method", ["linearized", "mc", "unscented"])
def test_a_predictive_of_a_function_that_is_not_finite_names_the_point(method):
    la = _fitted()

    def f(beta):  # NaN where β_0 > 0: at the mode (β_0 ≈ 0.2) and at draws around it
        return torch.where(beta[0] > 0, math.nan, 1.0) * beta

    with pytest.raises(NonFiniteError, match=r"is nan at θ = \["):
        la.predictive(f, method, n_samples=50, seed=0)
    assert float(la.mode[0]) > 0
