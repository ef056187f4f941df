"""evidence and nested_laplace name bad input before their work, and run in float32 at
tolerances that follow the dtype, against the conjugate normal model's closed form."""

import math
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import probcalc as pc

PACKAGE = Path(pc.__file__).resolve().parent
F32 = torch.float32


def _raised_by_probcalc(info):
    frame = traceback.extract_tb(info.tb)[-1]
    assert Path(frame.filename).resolve().is_relative_to(PACKAGE), frame


def _model(d, dtype=torch.float64, n=6, seed=0):
    """y_ij ~ N(θ_j, 1), θ_j ~ N(0, 1), j < d: a log joint of θ (d,), and its log evidence
    in closed form (y_.j ~ N(0, I + 11'), independently over j)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d)) + rng.normal(size=d)
    Y = torch.as_tensor(y, dtype=dtype)

    def log_joint(theta):
        return Normal(theta, 1.0).log_prob(Y).sum() + Normal(0.0, 1.0).log_prob(theta).sum()

    C = np.eye(n) + np.ones((n, n))
    exact = sum(
        -0.5 * y[:, j] @ np.linalg.solve(C, y[:, j]) - 0.5 * np.linalg.slogdet(2 * np.pi * C)[1]
        for j in range(d)
    )
    return log_joint, exact


def _vector(theta):
    """Per-coordinate terms, not summed: one number per coordinate."""
    return Normal(0.0, 1.0).log_prob(theta)


BAD_EVIDENCE_INPUT = [
    (
        "a vector per point, laplace",
        dict(log_joint=_vector, theta0=torch.zeros(2)),
        ValueError,
        r"one number per point, a tensor of shape \(\), got shape \(2,\) at theta0",
    ),
    (
        "a vector per point, bounds",
        dict(log_joint=_vector, bounds=[(-5, 5)] * 2, method="quadrature"),
        ValueError,
        r"got shape \(2,\) at the point",
    ),
    (
        "log_joint not callable",
        dict(log_joint=None, theta0=torch.zeros(1)),
        TypeError,
        "log_joint must be a function",
    ),
    ("theta0 complex", dict(theta0=torch.zeros(1, dtype=torch.complex64)), TypeError, "complex64"),
    ("theta0 NaN", dict(theta0=torch.tensor([math.nan])), ValueError, "theta0 must be finite"),
    ("theta0 a matrix", dict(theta0=torch.zeros(1, 1)), ValueError, r"shape \(d,\)"),
    ("bounds NaN", dict(bounds=[(math.nan, 1.0)], method="quadrature"), ValueError, "low < high"),
    ("bounds reversed", dict(bounds=[(1.0, -1.0)], method="quadrature"), ValueError, "low < high"),
    (
        "bounds not pairs",
        dict(bounds=[1.0, 2.0], method="quadrature"),
        TypeError,
        r"\(low, high\) pairs",
    ),
    (
        "bounds a string",
        dict(bounds="(-1, 1)", method="quadrature"),
        TypeError,
        r"\(low, high\) pairs",
    ),
    (
        "df negative",
        dict(theta0=torch.zeros(1), method="mc", df=-1.0),
        ValueError,
        "df must be a positive finite number",
    ),
    (
        "laplace not a fit",
        dict(laplace=3, method="quadrature"),
        TypeError,
        "laplace must be a LaplaceApproximation",
    ),
    (
        "proposal not a distribution",
        dict(theta0=torch.zeros(1), method="mc", proposal="t"),
        TypeError,
        "proposal must be a torch.distributions.Distribution",
    ),
    (
        "rtol a string",
        dict(bounds=[(-5, 5)], method="quadrature", rtol="1e-6"),
        TypeError,
        "rtol must be a number",
    ),
    (
        "rtol below float32 round-off",
        dict(theta0=torch.zeros(1, dtype=F32), method="quadrature", rtol=1e-8),
        ValueError,
        "eps",
    ),
]


@pytest.mark.parametrize(
    ("label", "arguments", "error", "match"),
    BAD_EVIDENCE_INPUT,
    ids=[case[0] for case in BAD_EVIDENCE_INPUT],
)
def test_bad_evidence_input_is_named_before_the_work(label, arguments, error, match):
    log_joint = arguments.pop("log_joint", lambda theta: _model(1)[0](theta))
    with pytest.raises(error, match=match) as info:
        pc.evidence(log_joint, **arguments)
    _raised_by_probcalc(info)


@pytest.mark.parametrize("method", ["laplace", "quadrature", "mc"])
def test_a_vector_log_joint_with_a_given_fit_is_named_at_its_first_call(method):
    log_joint, _ = _model(2)
    la = pc.laplace.fit(log_joint, torch.zeros(2))
    with pytest.raises(ValueError, match=r"got shape \(2,\) at the fit's mode"):
        pc.evidence(_vector, laplace=la, method=method, seed=0)


def test_a_distribution_that_rejects_theta0_is_named_by_evidence():
    Y = torch.tensor([0.3, -0.2], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cannot be evaluated at theta0 = \[-1\.0\]"):
        pc.evidence(lambda t: Normal(0.0, t[0]).log_prob(Y).sum(), theta0=torch.tensor([-1.0]))


BAD_NESTED_INPUT = [
    (
        "hyper_bounds infinite",
        dict(hyper_bounds=[(0.0, math.inf)]),
        ValueError,
        "finite numbers with low < high",
    ),
    ("hyper_bounds NaN", dict(hyper_bounds=[(math.nan, 1.0)]), ValueError, "low < high"),
    ("hyper_bounds not pairs", dict(hyper_bounds=[0.0, 1.0]), TypeError, r"\(low, high\) pairs"),
    ("four hyperparameters", dict(hyper_bounds=[(0.0, 1.0)] * 4), ValueError, "1 to 3"),
    ("n_nodes 0", dict(n_nodes=0), ValueError, "n_nodes must be a positive integer"),
    ("n_nodes 2.5", dict(n_nodes=2.5), ValueError, "n_nodes must be a positive integer"),
    ("theta0 a matrix", dict(theta0=torch.zeros(2, 2)), ValueError, r"shape \(d,\)"),
    ("log_joint not callable", dict(log_joint=1.0), TypeError, "log_joint must be a function"),
    (
        "a vector per point",
        dict(log_joint=lambda t, h: -0.5 * t**2 * torch.exp(h)),
        ValueError,
        r"got shape \(2,\) at theta0",
    ),
]


@pytest.mark.parametrize(
    ("label", "arguments", "error", "match"),
    BAD_NESTED_INPUT,
    ids=[case[0] for case in BAD_NESTED_INPUT],
)
def test_bad_nested_laplace_input_is_named_before_the_fits(label, arguments, error, match):
    calls = []

    def log_joint(theta, h):
        calls.append(1)
        return -0.5 * (theta**2).sum() * torch.exp(h[0])

    target = arguments.pop("log_joint", log_joint)
    call = {"theta0": torch.zeros(2), "hyper_bounds": [(-1.0, 1.0)], **arguments}
    with pytest.raises(error, match=match) as info:
        pc.nested_laplace(target, call.pop("theta0"), **call)
    assert not calls
    _raised_by_probcalc(info)


@pytest.mark.parametrize(
    ("method", "d"), [("laplace", 1), ("quadrature", 1), ("quadrature", 3), ("laplace", 3)]
)
def test_float32_evidence_at_the_defaults_matches_the_closed_form(method, d):
    """With a float32 theta0 the fit and the integrals run in float32 (no float64 nodes
    meeting float32 factors) at tolerances that follow the dtype: quadrature is the adaptive
    rule for d = 1 and Gauss-Hermite for d = 3. The posterior is Gaussian, so every method
    is exact up to float32's rounding of a log evidence of about -10 d (a few 1e-6)."""
    log_joint, exact = _model(d, dtype=F32)
    result = pc.evidence(log_joint, theta0=torch.zeros(d, dtype=F32), method=method)
    assert result.log_evidence.dtype == F32
    assert abs(float(result.log_evidence) - exact) <= 1e-5 * abs(exact)
    assert result.error.dtype == F32 and result.error.dim() == 0
    if method == "laplace":  # not estimated
        assert float(result.error) == math.inf
    else:  # the integral's error, and float32's of the log itself
        eps = torch.finfo(F32).eps
        assert abs(float(result.log_evidence) - exact) <= result.error + 8 * eps * abs(exact)
        assert result.diagnostics["converged"]


def test_float32_quadrature_over_bounds_matches_the_closed_form():
    """bounds alone integrate in float64 (no theta0 gives a dtype); with a float32 theta0
    the box runs in float32."""
    log_joint, exact = _model(1, dtype=F32)
    for theta0 in (None, torch.zeros(1, dtype=F32)):
        result = pc.evidence(log_joint, bounds=[(-10.0, 10.0)], method="quadrature", theta0=theta0)
        dtype = torch.float64 if theta0 is None else F32
        assert result.log_evidence.dtype == dtype
        assert abs(float(result.log_evidence) - exact) <= 1e-5 * abs(exact)
