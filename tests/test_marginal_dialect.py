"""evidence and nested_laplace speak the conventions page's dialect: log_evidence, a 0-d
tensor error for every method, n_samples, seeds, bad input before the fit, tensor fields;
the deprecated names keep their values. Checked against the normal-normal closed form and
numpy's Gauss-Legendre rule."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

import probcalc as pc

Y = torch.tensor([0.3, 1.2, -0.4, 0.9, 2.1], dtype=torch.float64)


def _normal_normal():
    """y_i ~ N(θ, 1), θ ~ N(0, 1.5²): the log joint and the log evidence in closed form."""

    def log_joint(theta):
        return Normal(0.0, 1.5).log_prob(theta[0]) + Normal(theta[0], 1.0).log_prob(Y).sum()

    exact = MultivariateNormal(torch.zeros(5), torch.eye(5) + 1.5**2).log_prob(Y)
    return log_joint, float(exact)


def _deprecated(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    assert {w.category for w in caught} == {DeprecationWarning}, caught
    return value, [str(w.message) for w in caught]


@pytest.mark.parametrize("method", ["quadrature", "mc", "laplace"])
def test_every_method_reports_log_evidence_and_a_tensor_error(method):
    log_joint, exact = _normal_normal()
    result = pc.evidence(log_joint, method=method, theta0=torch.zeros(1), seed=0)
    assert isinstance(result.error, torch.Tensor) and result.error.dim() == 0
    assert not result.error.requires_grad
    assert result.error.dtype == result.log_evidence.dtype
    if method == "laplace":  # not estimated; the Laplace evidence is exact here
        assert float(result.error) == math.inf
        assert float(result.log_evidence) == pytest.approx(exact, abs=1e-9)
    else:  # an error bound, or a standard error (four of them)
        factor = 1 if method == "quadrature" else 4
        assert 0 < float(result.error) < 0.01
        assert abs(float(result.log_evidence) - exact) <= factor * float(result.error) + 1e-12
    old, messages = _deprecated(lambda: result.log_value)
    assert "use .log_evidence" in messages[0]
    assert old is result.log_evidence


def test_n_is_the_deprecated_name_of_n_samples():
    log_joint, _ = _normal_normal()
    options = {"method": "mc", "theta0": torch.zeros(1), "seed": 3}
    new = pc.evidence(log_joint, n_samples=500, **options)
    old, messages = _deprecated(lambda: pc.evidence(log_joint, n=500, **options))
    assert "use n_samples=" in messages[0]
    assert torch.equal(old.log_evidence, new.log_evidence)
    assert torch.equal(old.error, new.error)
    # the draw count is the one asked for: a different count gives a different estimate
    other = pc.evidence(log_joint, n_samples=501, **options)
    assert not torch.equal(other.log_evidence, new.log_evidence)


def test_an_int_seed_repeats_none_is_fresh_and_a_generator_advances():
    log_joint, _ = _normal_normal()
    la = pc.laplace.fit(log_joint, torch.zeros(1))

    def draw(seed):
        return pc.evidence(
            log_joint, method="mc", laplace=la, n_samples=200, seed=seed
        ).log_evidence

    reference = draw(7)
    state = torch.get_rng_state()
    assert torch.equal(draw(7), reference)
    first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = draw(first), draw(first)
    assert not torch.equal(a, b)
    assert torch.equal(draw(second), a)
    assert torch.equal(torch.get_rng_state(), state)  # torch's global state is untouched
    assert not torch.equal(draw(None), draw(None))


BAD_BEFORE_THE_FIT = [
    ("n_samples 0", {"n_samples": 0}, ValueError, r"n_samples must be an integer >= 10 .*, got 0"),
    ("n_samples 9", {"n_samples": 9}, ValueError, r"n_samples must be an integer >= 10 .*, got 9"),
    ("n_samples 1.5", {"n_samples": 1.5}, ValueError, "n_samples must be an integer"),
    ("seed a string", {"seed": "0"}, TypeError, r"seed must be an int, a torch\.Generator"),
    ("seed negative", {"seed": -1}, ValueError, "seed must be a non-negative int"),
    (
        "proposal of another dimension",
        {"proposal": Normal(torch.zeros(2), 1.0)},
        ValueError,
        r"event shape \(1,\), got \(\)",
    ),
    ("both n and n_samples", {"n": 20, "n_samples": 20}, TypeError, "both 'n' and"),
]


@pytest.mark.parametrize(
    ("label", "arguments", "error", "match"),
    BAD_BEFORE_THE_FIT,
    ids=[case[0] for case in BAD_BEFORE_THE_FIT],
)
def test_bad_mc_input_is_named_before_the_laplace_fit(label, arguments, error, match):
    log_joint, _ = _normal_normal()
    calls = []

    def counted(theta):
        calls.append(1)
        return log_joint(theta)

    with pytest.raises(error, match=match):
        pc.evidence(counted, method="mc", theta0=torch.zeros(1), **arguments)
    assert len(calls) <= 1  # at most the check at theta0


def test_empty_bounds_are_named():
    log_joint, _ = _normal_normal()
    with pytest.raises(ValueError, match="bounds must hold one"):
        pc.evidence(log_joint, method="quadrature", bounds=[])
    with pytest.raises(ValueError, match="hyper_bounds must hold one"):
        pc.nested_laplace(lambda t, h: log_joint(t), torch.zeros(1), hyper_bounds=[])


def test_nested_laplace_returns_tensors_on_the_gauss_legendre_grid():
    """y_i ~ N(θ, e^{2h}), θ ~ N(0, 1), h ~ N(0, 1): the grid is numpy's Gauss-Legendre
    rule mapped to the bounds, and the evidence integrates the closed-form p(y | h)."""

    def log_joint(theta, h):
        return (
            Normal(0.0, 1.0).log_prob(theta[0])
            + Normal(theta[0], torch.exp(h[0])).log_prob(Y).sum()
            + Normal(0.0, 1.0).log_prob(h[0])
        )

    low, high, n = -2.0, 2.0, 12
    result = pc.nested_laplace(log_joint, torch.zeros(1), hyper_bounds=[(low, high)], n_nodes=n)
    for name in ("hyper_grid", "hyper_density", "theta_mean", "theta_var", "log_conditional"):
        assert isinstance(getattr(result, name), torch.Tensor), name
    assert result.hyper_grid.shape == result.hyper_density.shape == (1, n)
    nodes, weights = np.polynomial.legendre.leggauss(n)
    grid = low + (high - low) * (nodes + 1) / 2
    np.testing.assert_allclose(result.hyper_grid[0].numpy(), grid, rtol=1e-13, atol=1e-14)

    def log_marginal(h):  # p(y | h) p(h), θ integrated out exactly
        covariance = math.exp(2 * h) * np.eye(5) + 1.0
        inverse = np.linalg.inv(covariance)
        y = Y.numpy()
        log_density = -0.5 * (y @ inverse @ y + np.linalg.slogdet(2 * np.pi * covariance)[1])
        return log_density - 0.5 * h * h - 0.5 * math.log(2 * math.pi)

    values = np.array([log_marginal(h) for h in grid])
    expected = np.log(np.sum(weights * (high - low) / 2 * np.exp(values)))
    assert float(result.log_evidence) == pytest.approx(expected, abs=1e-10)
