"""laplace.fit and fit_module name bad input before their work, from probcalc's own code;
a mode search whose trial step leaves a parameter's support backs off, against closed forms."""

import contextlib
import math
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import scipy.optimize
import torch
from torch import nn

import probcalc as pc
from probcalc.core import NonFiniteError

PACKAGE = Path(pc.__file__).resolve().parent
D = torch.distributions
fit, fit_module = pc.laplace.fit, pc.laplace.fit_module


def _raised_by_probcalc(info):
    frame = traceback.extract_tb(info.tb)[-1]
    assert Path(frame.filename).resolve().is_relative_to(PACKAGE), frame


def _gaussian(t):
    return -0.5 * (t**2).sum()


# --------------------------------------------------------------------------------------
# fit


BAD_FIT_INPUT = [
    (
        "a vector per point",
        dict(log_joint=lambda t: -0.5 * t**2),
        ValueError,
        r"one number per point, a tensor of shape \(\), got shape \(2,\) at theta0",
    ),
    ("a Python float", dict(log_joint=lambda t: 1.0), TypeError, "must return a 0-d tensor"),
    ("log_joint not callable", dict(log_joint="model"), TypeError, "log_joint must be a function"),
    ("theta0 NaN", dict(theta0=torch.tensor([math.nan, 0.0])), ValueError, "theta0 must be finite"),
    (
        "theta0 complex",
        dict(theta0=torch.zeros(2, dtype=torch.complex128)),
        TypeError,
        "complex128",
    ),
    ("theta0 float16", dict(theta0=torch.zeros(2, dtype=torch.float16)), TypeError, "float16"),
    ("theta0 a string", dict(theta0="0"), TypeError, "theta0 must be a tensor"),
    ("theta0 a matrix", dict(theta0=torch.zeros(2, 2)), ValueError, r"shape \(d,\)"),
    (
        "a stochastic optimizer",
        dict(optimizer="adam"),
        ValueError,
        "'newton', 'newton-cg', 'lbfgs'",
    ),
    ("an unknown optimizer", dict(optimizer="bfgs"), ValueError, "unknown optimizer 'bfgs'"),
    (
        "rank 1.5",
        dict(structure="lowrank", rank=1.5, prior_precision=1.0),
        ValueError,
        r"rank= an integer with 1 <= rank <= d = 2, got 1.5",
    ),
    (
        "rank above d",
        dict(structure="lowrank", rank=3, prior_precision=1.0),
        ValueError,
        r"rank= an integer with 1 <= rank <= d = 2, got 3",
    ),
    ("n_probes 0", dict(structure="diag", n_probes=0), ValueError, "n_probes must be an integer"),
    ("seed a string", dict(seed="0"), TypeError, "seed must be an int, a torch.Generator"),
    ("prior_precision inf", dict(prior_precision=math.inf), ValueError, "positive and finite"),
    ("prior_precision a string", dict(prior_precision="1"), TypeError, "prior_precision"),
    ("constraints a number", dict(constraints=3), TypeError, "constraints must be a kind"),
    ("constraints unknown", dict(constraints="simplex"), ValueError, "unknown constraints"),
    (
        "a stray structure",
        dict(structure="dense"),
        ValueError,
        "unknown structure 'dense'; valid choices are 'full', 'diag', 'lowrank'$",
    ),
]


@pytest.mark.parametrize(
    ("label", "arguments", "error", "match"), BAD_FIT_INPUT, ids=[case[0] for case in BAD_FIT_INPUT]
)
def test_bad_fit_input_is_named_before_the_mode_search(label, arguments, error, match):
    calls = []
    log_joint = arguments.pop("log_joint", _gaussian)

    def counted(t):
        calls.append(1)
        return log_joint(t)

    target = counted if callable(log_joint) else log_joint
    theta0 = arguments.pop("theta0", torch.ones(2))
    with pytest.raises(error, match=match) as info:
        fit(target, theta0, **arguments)
    assert len(calls) <= 1  # at most the check at theta0, never the optimizer
    _raised_by_probcalc(info)


def test_a_distribution_that_rejects_theta0_is_a_value_error_with_torchs_message():
    y = torch.tensor([0.3, -0.2])

    def log_joint(t):
        return D.Normal(0.0, t[0]).log_prob(y).sum()

    with pytest.raises(ValueError, match=r"cannot be evaluated at theta0 = \[-1.0\]") as info:
        fit(log_joint, torch.tensor([-1.0]))
    assert "GreaterThan(lower_bound=0.0)" in str(info.value)
    assert "constraints=" in str(info.value)
    _raised_by_probcalc(info)


def test_a_value_error_of_the_users_own_is_not_taken_for_a_support_error():
    """Only torch.distributions' validation errors count as a step outside the support: a
    ValueError the model raises itself comes through, at theta0 and at a trial point (the
    first Newton step from 0 is the full step to the mode 5)."""

    def log_joint(t):
        if bool(t.detach()[0] > 4.5):
            raise ValueError("my model's own check")
        return -((t - 5) ** 2).sum()

    with pytest.raises(ValueError, match="my model's own check"):
        fit(log_joint, torch.tensor([4.8]))
    for optimizer in ("newton", "newton-cg"):
        with pytest.raises(ValueError, match="my model's own check"):
            fit(log_joint, torch.tensor([0.0]), optimizer=optimizer)


# A scale σ with observations y_i ~ N(0, σ²): the log joint's Newton steps from σ = 1, 2, 3
# land at negative σ, where torch.distributions' validation (on by default) raises.
Y = torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4], dtype=torch.float64)
N, S = len(Y), float((Y**2).sum())


def _recording(log_joint, seen):
    def recorded(t):
        with contextlib.suppress(RuntimeError):  # inside torch.func's transforms
            seen.append(float(t.detach()[0]))
        return log_joint(t)

    return recorded


def _half_normal_prior(t):
    return D.Normal(0.0, t[0]).log_prob(Y).sum() + D.HalfNormal(1.0).log_prob(t[0])


def _gamma_prior(t):
    return D.Normal(0.0, t[0]).log_prob(Y).sum() + D.Gamma(2.0, 2.0).log_prob(t[0])


# the modes: HalfNormal(1): -N/σ + S/σ³ - σ = 0, so σ² = (sqrt(N² + 4S) - N)/2; Gamma(2, rate
# 2): -(N - 1)/σ + S/σ³ - 2 = 0, solved by scipy
MODES = {
    "HalfNormal": (_half_normal_prior, math.sqrt((math.sqrt(N * N + 4 * S) - N) / 2)),
    "Gamma": (_gamma_prior, scipy.optimize.brentq(lambda s: -(N - 1) / s + S / s**3 - 2, 0.05, 5)),
}


@pytest.mark.parametrize("optimizer", ["newton", "newton-cg"])
@pytest.mark.parametrize("init", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("prior", MODES)
def test_a_trial_step_outside_the_support_is_a_rejected_step(prior, init, optimizer):
    """Without constraints= the Newton step from init lands at σ < 0, where Normal(0, σ)
    (and the prior's log_prob) raise ValueError; the mode search treats the point as
    log_joint = -inf, backs off, and finds the mode of the closed form."""
    log_joint, mode = MODES[prior]
    seen = []
    la = fit(_recording(log_joint, seen), torch.tensor([init]), optimizer=optimizer)
    assert min(seen) < 0, "the search must have tried a step outside the support"
    assert la.optimize_result.converged
    assert abs(float(la.mode[0]) - mode) <= 1e-8
    # the curvature at the mode is the closed form's second derivative
    sigma = mode
    second = {
        "HalfNormal": N / sigma**2 - 3 * S / sigma**4 - 1,
        "Gamma": (N - 1) / sigma**2 - 3 * S / sigma**4,
    }[prior]
    assert float(la.precision[0, 0]) == pytest.approx(-second, rel=1e-8)


def test_lbfgs_names_a_trial_point_outside_the_support():
    """torch's L-BFGS line search cannot back off from an infinite value: the step outside
    the support stops it with NonFiniteError naming the point."""
    with pytest.raises(NonFiniteError, match=r"the objective is inf at evaluation \d+, x = \[-"):
        fit(_half_normal_prior, torch.tensor([2.0]), optimizer="lbfgs")


# --------------------------------------------------------------------------------------
# fit_module


def _regression(features=3, outputs=2, n=10, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(features, 4), nn.Tanh(), nn.Linear(4, outputs)).double()
    return model, torch.randn(n, features), torch.randn(n, outputs)


def _classifier(classes=3, n=12, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, classes)).double()
    return model, torch.randn(n, 2), torch.randint(0, classes, (n,))


def _data():
    """The models and data the cases below use, in float64 (built inside the tests, where
    the default dtype is float64)."""
    model_r, X_r, y_r = _regression()
    model_c, X_c, y_c = _classifier()
    X_nan, y_nan = X_r.clone(), y_r.clone()
    X_nan[2, 1] = math.nan
    y_nan[4, 0] = math.inf
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(12, 2)).double()
    return SimpleNamespace(**locals())


BAD_DATA = [
    (
        "wrong number of features",
        lambda d: fit_module(d.model_r, (torch.randn(10, 5), d.y_r)),
        ValueError,
        r"X \(batch 0\) of shape \(10, 5\).*takes inputs of shape \(n, 3\)",
    ),
    (
        "a convolution given a matrix",
        lambda d: fit_module(d.conv, (torch.randn(5, 8), d.y_r[:5])),
        ValueError,
        r"shape \(5, 8\).*Conv1d\(1, 2.*\(n, 1, \.\.\.\) with 1 spatial",
    ),
    (
        "batch sizes differ",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_r[:7])),
        ValueError,
        r"X has shape \(10, 3\), y \(7, 2\)",
    ),
    (
        "targets of the wrong width",
        lambda d: fit_module(d.model_r, (d.X_r, torch.randn(10, 3))),
        ValueError,
        r"y of batch 0 has shape \(10, 3\), expected \(10, 2\)",
    ),
    (
        "targets flattened",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_r.reshape(-1))),
        ValueError,
        r"y \(20,\)",
    ),
    (
        "an empty batch",
        lambda d: fit_module(d.model_r, (d.X_r[:0], d.y_r[:0])),
        ValueError,
        r"must hold inputs along dim 0, got shape \(0, 3\)",
    ),
    ("no batches", lambda d: fit_module(d.model_r, []), ValueError, "data holds no batches"),
    ("data a tensor", lambda d: fit_module(d.model_r, d.X_r), TypeError, "data must be a pair"),
    (
        "a batch of three",
        lambda d: fit_module(d.model_r, [(d.X_r, d.y_r, d.y_r)]),
        TypeError,
        "its batch 0 is tuple of length 3",
    ),
    (
        "float32 inputs",
        lambda d: fit_module(d.model_r, (d.X_r.float(), d.y_r)),
        TypeError,
        r"torch.float32, the network's parameters torch.float64",
    ),
    (
        "inputs on another device",
        lambda d: fit_module(d.model_r, (d.X_r.to("meta"), d.y_r)),
        ValueError,
        "is on meta",
    ),
    (
        "NaN in X",
        lambda d: fit_module(d.model_r, (d.X_nan, d.y_r)),
        NonFiniteError,
        r"X \(batch 0\) is not finite at input 2",
    ),
    (
        "inf in y",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_nan)),
        NonFiniteError,
        r"y \(batch 0\) is not finite at input 4",
    ),
    (
        "classes as floats",
        lambda d: fit_module(d.model_c, (d.X_c, d.y_c.double()), likelihood="classification"),
        TypeError,
        "integer class indices",
    ),
    (
        "one-hot classes",
        lambda d: fit_module(
            d.model_c, (d.X_c, nn.functional.one_hot(d.y_c, 3)), likelihood="classification"
        ),
        ValueError,
        r"y\.argmax\(dim=1\)",
    ),
    (
        "a class out of range",
        lambda d: fit_module(d.model_c, (d.X_c, d.y_c + 1), likelihood="classification"),
        ValueError,
        r"class indices in 0\.\.2 \(the network gives 3 logits\), got 3",
    ),
    (
        "a negative class",
        lambda d: fit_module(d.model_c, (d.X_c, d.y_c - 1), likelihood="classification"),
        ValueError,
        "got -1",
    ),
    (
        "prior_precision inf",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_r), prior_precision=math.inf),
        ValueError,
        "prior_precision must be positive and finite",
    ),
    (
        "sigma_noise a string",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_r), sigma_noise="1"),
        TypeError,
        "sigma_noise must be a positive number",
    ),
    (
        "rank 2.5",
        lambda d: fit_module(d.model_r, (d.X_r, d.y_r), structure="lowrank", rank=2.5),
        ValueError,
        r"rank= an integer with 1 <= rank <= d = \d+, got 2.5",
    ),
    (
        "model a function",
        lambda d: fit_module(lambda x: x, (d.X_r, d.y_r)),
        TypeError,
        "model must be a torch.nn.Module",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "error", "match"), BAD_DATA, ids=[case[0] for case in BAD_DATA]
)
def test_bad_data_for_fit_module_is_named_before_the_jacobians(label, call, error, match):
    data = _data()
    with pytest.raises(error, match=match) as info:
        call(data)
    _raised_by_probcalc(info)


def test_predictive_and_output_moments_name_inputs_the_network_does_not_take():
    d = _data()
    la = fit_module(d.model_r, (d.X_r, d.y_r))
    for method in (la.predictive, la.output_moments):
        with pytest.raises(ValueError, match=r"X of shape \(4, 5\).*\(n, 3\)"):
            method(torch.randn(4, 5))
        with pytest.raises(ValueError, match=r"X of shape \(3,\)"):
            method(torch.randn(3))
        with pytest.raises(ValueError, match="must hold inputs"):
            method(torch.randn(0, 3))
        with pytest.raises(TypeError, match="X must be a tensor"):
            method([[0.0, 1.0, 2.0]])


def test_log_evidence_at_rejects_a_prior_or_noise_that_is_not_positive():
    d = _data()
    la = fit_module(d.model_r, (d.X_r, d.y_r))
    with pytest.raises(ValueError, match="prior_precision must be positive"):
        la.log_evidence_at(-1.0, 1.0)
    with pytest.raises(ValueError, match="sigma_noise must be positive"):
        la.log_evidence_at(1.0, 0.0)


def test_targets_of_shape_m_for_one_output_and_a_list_pair_are_the_same_data():
    """y of shape (m,) for a network with one output, and [X, y] for (X, y), fit the same
    approximation as y of shape (m, 1)."""
    model, X, y = _regression(outputs=1)
    reference = fit_module(model, (X, y)).log_evidence
    assert torch.equal(fit_module(model, (X, y.reshape(-1))).log_evidence, reference)
    assert torch.equal(fit_module(model, [X, y]).log_evidence, reference)
    batches = [(X[:4], y[:4]), (X[4:], y[4:])]
    assert float(fit_module(model, batches).log_evidence) == pytest.approx(
        float(reference), rel=1e-12
    )
