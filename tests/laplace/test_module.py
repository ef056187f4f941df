"""fit_module against Bayesian linear regression in closed form, against laplace.fit, and
optimize_prior_precision against scipy on the same evidence formula."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

import probcalc as pc

ALPHA, SIGMA = 2.0, 0.5


def _data(n=100, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = torch.as_tensor(rng.normal(size=(n, d)))
    y = X @ torch.as_tensor(rng.normal(size=d)) + SIGMA * torch.as_tensor(rng.normal(size=n))
    return X, y


def _map_linear_model(X, y):
    """An nn.Linear without bias set to the MAP: (α I + X'X/σ²)⁻¹ X'y/σ²."""
    d = X.shape[1]
    precision = ALPHA * torch.eye(d) + X.T @ X / SIGMA**2
    weights = torch.linalg.solve(precision, X.T @ y / SIGMA**2)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(weights[None, :])
    evidence = torch.distributions.MultivariateNormal(
        torch.zeros(len(y)), SIGMA**2 * torch.eye(len(y)) + X @ X.T / ALPHA
    ).log_prob(y)
    return model, float(evidence), precision


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
@pytest.mark.parametrize("structure", ["full", "last_layer", "lowrank"])
def test_linear_regression_evidence_is_the_closed_form(structure, curvature):
    X, y = _data()
    model, evidence, _ = _map_linear_model(X, y)
    rank = 3 if structure == "lowrank" else None
    la = pc.laplace.fit_module(
        model,
        (X, y[:, None]),
        prior_precision=ALPHA,
        sigma_noise=SIGMA,
        structure=structure,
        curvature=curvature,
        rank=rank,
    )
    if structure == "lowrank":  # rank 3 of 4: below the exact evidence, not equal to it
        assert float(la.log_evidence) != pytest.approx(evidence, abs=1e-3)
        return
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)


def test_batches_accumulate_to_the_full_data_result():
    X, y = _data()
    model, evidence, _ = _map_linear_model(X, y)
    batches = [(X[i : i + 30], y[i : i + 30, None]) for i in range(0, 100, 30)]
    la = pc.laplace.fit_module(model, batches, prior_precision=ALPHA, sigma_noise=SIGMA)
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)
    # a one-shot iterable works with the exact Hessian too (it needs the data twice)
    la = pc.laplace.fit_module(
        model, iter(batches), prior_precision=ALPHA, sigma_noise=SIGMA, curvature="hessian"
    )
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)


def test_predictive_variance_of_linear_regression():
    X, y = _data()
    model, _, precision = _map_linear_model(X, y)
    la = pc.laplace.fit_module(model, (X, y[:, None]), prior_precision=ALPHA, sigma_noise=SIGMA)
    X_new = torch.randn(5, 4, dtype=torch.float64)
    predictive = la.predictive(X_new)
    mean, variance = predictive.mean, predictive.variance
    exact = (X_new @ torch.linalg.solve(precision, X_new.T)).diagonal() + SIGMA**2
    assert torch.allclose(variance[:, 0], exact, atol=1e-12)
    assert torch.allclose(mean[:, 0], model(X_new)[:, 0].detach(), atol=1e-12)


def test_classification_ggn_equals_laplace_fit_for_a_linear_softmax():
    """For a linear softmax (canonical link) the GGN is the Hessian: fit_module must give
    laplace.fit's evidence on the same log joint at the same mode."""
    rng = np.random.default_rng(3)
    X = torch.as_tensor(rng.normal(size=(150, 3)))
    y = torch.as_tensor(rng.integers(0, 3, size=150))
    d = 3 * 3

    def log_joint(theta):
        logits = X @ theta.reshape(3, 3).T
        prior = -0.5 * ALPHA * theta @ theta + 0.5 * d * math.log(ALPHA / (2 * math.pi))
        return prior - pc.core.categorical_nll(y, logits)

    reference = pc.laplace.fit(log_joint, torch.zeros(d))
    model = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(reference.mode.reshape(3, 3))
    for curvature in ("ggn", "hessian"):
        la = pc.laplace.fit_module(
            model, (X, y), likelihood="classification", prior_precision=ALPHA, curvature=curvature
        )
        assert float(la.log_evidence) == pytest.approx(float(reference.log_evidence), abs=1e-8)
    probs = la.predictive(X[:4]).mean
    assert torch.allclose(probs.sum(-1), torch.ones(4, dtype=torch.float64))


def test_diag_structure_on_an_orthogonal_design_is_exact():
    X, y = _data(n=64, d=4)
    q, _ = torch.linalg.qr(X)
    X = q * torch.tensor([3.0, 2.0, 1.5, 1.0], dtype=torch.float64)
    model, evidence, _ = _map_linear_model(X, y)
    la = pc.laplace.fit_module(
        model, (X, y[:, None]), prior_precision=ALPHA, sigma_noise=SIGMA, structure="diag"
    )
    assert float(la.log_evidence) == pytest.approx(evidence, abs=1e-8)


def test_optimize_prior_precision_matches_scipy_on_the_same_formula():
    """With θ* and G fixed, maximize log p(y|θ*, σ) + d/2 log α - α/2|θ*|² - ½Σ log(λ/σ² + α)
    over (α, σ) by scipy from the numbers alone; probcalc must find the same optimum."""
    X, y = _data(n=200, d=6, seed=5)
    model, _, _ = _map_linear_model(X, y)
    la = pc.laplace.fit_module(model, (X, y[:, None]), prior_precision=ALPHA, sigma_noise=SIGMA)
    tuned, trace = la.optimize_prior_precision()
    residual = (y - model(X)[:, 0].detach()).numpy()
    sse, n, d = float(residual @ residual), len(y), 6
    eigenvalues = np.linalg.eigvalsh(X.numpy().T @ X.numpy())
    norm2 = float((model.weight.detach() ** 2).sum())

    def negative_evidence(log_params):
        alpha, sigma = np.exp(log_params)
        return -(
            -0.5 * sse / sigma**2
            - n * np.log(sigma)
            - 0.5 * n * np.log(2 * np.pi)
            + 0.5 * d * np.log(alpha)
            - 0.5 * alpha * norm2
            - 0.5 * np.sum(np.log(eigenvalues / sigma**2 + alpha))
        )

    reference = scipy.optimize.minimize(
        negative_evidence,
        np.log([ALPHA, SIGMA]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12},
    )
    assert tuned.prior_precision == pytest.approx(math.exp(reference.x[0]), rel=1e-5)
    assert tuned.sigma_noise == pytest.approx(math.exp(reference.x[1]), rel=1e-5)
    assert float(tuned.log_evidence) == pytest.approx(-reference.fun, abs=1e-8)
    assert trace["log_evidence"][-1] >= trace["log_evidence"][0]


def test_bad_input():
    X, y = _data()
    model, _, _ = _map_linear_model(X, y)
    with pytest.raises(ValueError, match="'regression', 'classification'"):
        pc.laplace.fit_module(model, (X, y[:, None]), likelihood="poisson")
    with pytest.raises(ValueError, match="rank"):
        pc.laplace.fit_module(model, (X, y[:, None]), structure="lowrank")
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        pc.laplace.fit_module(nn.Sequential(nn.Tanh()), (X, y[:, None]), structure="last_layer")


def test_cholesky_and_eigendecomposition_paths_agree():
    X, y = _data(n=80, d=5, seed=7)
    model, _, _ = _map_linear_model(X, y)
    la = pc.laplace.fit_module(model, (X, y[:, None]), prior_precision=ALPHA, sigma_noise=SIGMA)
    by_cholesky = float(la.log_evidence)
    variance = la.predictive(X[:3]).variance
    by_eigen = float(la.log_evidence_at(ALPHA, SIGMA))  # computes the spectrum
    assert by_cholesky == pytest.approx(by_eigen, abs=1e-10)
    variance_eigen = la.predictive(X[:3]).variance  # now through the eigenvectors
    assert torch.allclose(variance, variance_eigen, atol=1e-12)
