"""Bad input to the integrators is named before any work, from probcalc's own code; float32
input runs at tolerances that follow the dtype, against closed forms."""

import math
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

import probcalc as pc
from probcalc.integrate import cubature, expect_normal, gauss_legendre, log_integral, quad, smolyak

PACKAGE = Path(pc.__file__).resolve().parent
F32 = torch.float32
EPS32 = torch.finfo(F32).eps
INF = math.inf


class Counting:
    """An integrand that counts its calls (returns f(x) of a batch)."""

    def __init__(self, f=lambda x: x.reshape(len(x), -1).sum(1)):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


def _raised_by_probcalc(info):
    """The innermost frame of the error is probcalc's own code, not torch's."""
    frame = traceback.extract_tb(info.tb)[-1]
    assert Path(frame.filename).resolve().is_relative_to(PACKAGE), frame


def _t(value, dtype=F32):
    return torch.tensor(value, dtype=dtype)


# (label, call with the counting integrand f, exception, message pattern)
BEFORE_WORK = [
    ("quad: limits a string", lambda f: quad(f, "0", 1.0), TypeError, "a must be a real number"),
    ("quad: a limit None", lambda f: quad(f, 0.0, None), TypeError, "b must be a real number"),
    (
        "quad: complex limits",
        lambda f: quad(f, _t(0j, torch.complex64), _t(1 + 0j, torch.complex64)),
        TypeError,
        "complex64.*float32 or float64",
    ),
    (
        "quad: float16 limits",
        lambda f: quad(f, _t(0.0, torch.float16), _t(1.0, torch.float16)),
        TypeError,
        "float16",
    ),
    (
        "quad: bfloat16 limits",
        lambda f: quad(f, _t(0.0, torch.bfloat16), 1.0),
        TypeError,
        "bfloat16",
    ),
    (
        "quad: empty limits",
        lambda f: quad(f, torch.zeros(0), torch.zeros(0)),
        ValueError,
        "no limits",
    ),
    ("quad: NaN limit", lambda f: quad(f, math.nan, 1.0), ValueError, "NaN"),
    ("quad: rtol NaN", lambda f: quad(f, 0.0, 1.0, rtol=math.nan), ValueError, "rtol.*nan"),
    ("quad: atol negative", lambda f: quad(f, 0.0, 1.0, atol=-1.0), ValueError, "atol"),
    ("quad: rtol a string", lambda f: quad(f, 0.0, 1.0, rtol="1e-6"), TypeError, "rtol"),
    (
        "quad: rtol below float32 round-off",
        lambda f: quad(f, _t(0.0), _t(1.0), rtol=1e-8),
        ValueError,
        r"50 eps = 6e-06 of torch.float32 \(eps = 1.19e-07\)",
    ),
    (
        "quad: max_evals below the first round",
        lambda f: quad(f, 0.0, 1.0, max_evals=10),
        ValueError,
        "first round's 42 points",
    ),
    ("quad: max_evals inf", lambda f: quad(f, 0.0, 1.0, max_evals=INF), ValueError, "max_evals"),
    ("quad: order a string", lambda f: quad(f, 0.0, 1.0, order="7"), TypeError, "order"),
    ("quad: order 0", lambda f: quad(f, 0.0, 1.0, order=0), ValueError, "order"),
    ("quad: batched a string", lambda f: quad(f, 0.0, 1.0, batched="no"), TypeError, "batched"),
    ("quad: unknown device", lambda f: quad(f, 0.0, 1.0, device="gpu0"), ValueError, "device"),
    (
        "cubature: limits of two shapes",
        lambda f: cubature(f, [0.0, 0.0], [1.0]),
        ValueError,
        "same shape",
    ),
    ("cubature: 2-D limits", lambda f: cubature(f, [[0.0]], [[1.0]]), ValueError, r"shape \(d,\)"),
    (
        "cubature: a string limit",
        lambda f: cubature(f, ["a", 0.0], [1.0, 1.0]),
        TypeError,
        "lower must be",
    ),
    (
        "cubature: complex limits",
        lambda f: cubature(f, torch.zeros(2, dtype=torch.complex128), [1.0, 1.0]),
        TypeError,
        "complex128",
    ),
    (
        "cubature: unknown rule",
        lambda f: cubature(f, [0.0], [1.0], rule="monte-carlo"),
        ValueError,
        "'adaptive', 'gauss-legendre', 'sparse', 'qmc'",
    ),
    (
        "cubature: seed a float",
        lambda f: cubature(f, [0.0], [1.0], rule="qmc", seed=1.5),
        TypeError,
        "seed",
    ),
    (
        "cubature: rtol below float32 round-off",
        lambda f: cubature(f, torch.zeros(2, dtype=F32), torch.ones(2, dtype=F32), rtol=1e-7),
        ValueError,
        "eps",
    ),
    (
        "expect_normal: complex mean",
        lambda f: expect_normal(f, torch.zeros(2, dtype=torch.complex128), torch.eye(2)),
        TypeError,
        "complex128",
    ),
    (
        "expect_normal: NaN in the mean",
        lambda f: expect_normal(f, _t([math.nan, 0.0]), torch.eye(2, dtype=F32)),
        ValueError,
        "mean must be finite",
    ),
    (
        "expect_normal: inf in cov",
        lambda f: expect_normal(f, torch.zeros(2), torch.eye(2) * INF),
        ValueError,
        "cov must be finite",
    ),
    (
        "expect_normal: cov not symmetric",
        lambda f: expect_normal(f, torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]])),
        ValueError,
        "symmetric",
    ),
    (
        "expect_normal: d = 0",
        lambda f: expect_normal(f, torch.zeros(0), torch.zeros(0, 0)),
        ValueError,
        "d >= 1",
    ),
    (
        "expect_normal: order a string",
        lambda f: expect_normal(f, torch.zeros(2), torch.eye(2), order="3"),
        ValueError,
        "order",
    ),
    (
        "expect_normal: rule unknown",
        lambda f: expect_normal(f, torch.zeros(2), torch.eye(2), rule="grid"),
        ValueError,
        "'auto', 'product', 'sparse'",
    ),
    (
        "log_integral: lower >= upper",
        lambda f: log_integral(f, 1.0, 0.0),
        ValueError,
        "lower < upper",
    ),
    (
        "log_integral: a box with lower >= upper",
        lambda f: log_integral(f, [0.0, 1.0], [1.0, 0.0]),
        ValueError,
        "lower < upper",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "error", "match"), BEFORE_WORK, ids=[case[0] for case in BEFORE_WORK]
)
def test_bad_input_is_named_before_the_integrand_is_called(label, call, error, match):
    f = Counting()
    with pytest.raises(error, match=match) as info:
        call(f)
    assert f.calls == 0
    _raised_by_probcalc(info)


@pytest.mark.parametrize(
    "call",
    [
        lambda: quad(3.0, 0.0, 1.0),
        lambda: cubature("f", [0.0], [1.0]),
        lambda: expect_normal(None, torch.zeros(1), torch.eye(1)),
    ],
)
def test_an_integrand_that_is_not_a_function_is_a_type_error(call):
    with pytest.raises(TypeError, match="the integrand must be a function"):
        call()


# integrands whose output is not one value (or batch) per point: found at the first call
WRONG_OUTPUTS = [
    (
        "quad: a vector per point, transposed",
        lambda f: quad(f, 0.0, 1.0),
        lambda x: torch.stack([x, x]),
        r"42 points .* got \(2, 42\)",
    ),
    (
        "quad: one number for the batch",
        lambda f: quad(f, 0.0, 1.0),
        lambda x: x.sum(),
        r"shape \(42,\) or \(42, \*batch\), got \(\)",
    ),
    (
        "quad: limits (3,), values (n,)",
        lambda f: quad(f, torch.zeros(3), torch.ones(3)),
        lambda x: x.sum(1),
        r"\(n, 3\) to the same shape",
    ),
    (
        "cubature: too few values",
        lambda f: cubature(f, [0.0, 0.0], [1.0, 1.0]),
        lambda x: x[:-1, 0],
        r"225 points .* got \(224,\)",
    ),
    (
        "expect_normal: one number for the batch",
        lambda f: expect_normal(f, torch.zeros(2), torch.eye(2)),
        lambda x: x.sum(),
        r"got \(\)",
    ),
    (
        "log_integral: a vector per point",
        lambda f: log_integral(f, 0.0, 1.0),
        lambda x: torch.stack([x, x, x]),
        r"got \(3, 42\)",
    ),
    (
        "log_integral box: too many values",
        lambda f: log_integral(f, [0.0, 0.0], [1.0, 1.0]),
        lambda x: torch.cat([x[:, 0], x[:, 1]]),
        r"got \(450,\)",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "g", "match"), WRONG_OUTPUTS, ids=[case[0] for case in WRONG_OUTPUTS]
)
def test_an_integrand_returning_the_wrong_number_of_values_is_named_at_its_first_call(
    label, call, g, match
):
    f = Counting(g)
    with pytest.raises(ValueError, match=match) as info:
        call(f)
    assert f.calls == 1
    _raised_by_probcalc(info)


@pytest.mark.parametrize(
    "call",
    [
        lambda: quad(lambda x: x * 1j, 0.0, 1.0),
        lambda: cubature(lambda x: x[:, 0] + 0j, [0.0], [1.0]),
        lambda: expect_normal(lambda x: x[:, 0] * 1j, torch.zeros(1), torch.eye(1)),
    ],
)
def test_a_complex_integrand_is_a_type_error(call):
    with pytest.raises(TypeError, match=r"must return real values, got torch\.complex"):
        call()


def test_float32_values_at_float64_nodes_are_named_against_the_float64_tolerance():
    """An integrand that computes in float32 cannot meet float64's default rtol: the error
    names both dtypes and what to change; with float32 limits the default follows."""
    f = Counting(lambda x: x.float() ** 2)
    with pytest.raises(ValueError, match=r"returns torch\.float32 values at torch\.float64"):
        quad(f, 0.0, 1.0)
    assert f.calls == 1
    result = quad(lambda x: x.float() ** 2, _t(0.0), _t(1.0))
    assert result.converged and abs(float(result.value) - 1 / 3) <= 1e-6


def test_rules_and_grids_reject_bad_orders_dtypes_and_levels():
    with pytest.raises(TypeError, match="order"):
        gauss_legendre("4")
    with pytest.raises(TypeError, match="dtype"):
        gauss_legendre(4, dtype=torch.int64)
    for level, d in ((0, 2), (2, 0), (1.5, 2)):
        with pytest.raises(ValueError, match="positive integer"):
            smolyak(level, d, gauss_legendre, dtype=torch.float64, device="cpu")


# --------------------------------------------------------------------------------------
# float32 at the defaults: rtol = 1000 eps (1.2e-4), against closed forms

DEFAULT_RTOL_32 = 1000 * EPS32

FLOAT32_CASES = {
    "quad: exp(-x²) over R": (
        lambda: quad(lambda x: torch.exp(-(x**2)), _t(-INF), _t(INF)),
        math.sqrt(math.pi),
    ),
    "quad: x^-1/2 on [0, 1]": (lambda: quad(lambda x: x**-0.5, _t(0.0), _t(1.0)), 2.0),
    "quad: Cauchy on [0, ∞)": (
        lambda: quad(lambda x: 1 / (1 + x**2), _t(0.0), _t(INF)),
        math.pi / 2,
    ),
    "quad: a jump at 0.3": (lambda: quad(lambda x: (x > 0.3).float(), _t(0.0), _t(1.0)), 0.7),
    "quad: e^x on [0, 10]": (lambda: quad(torch.exp, _t(0.0), _t(10.0)), math.exp(10) - 1),
    "cubature adaptive: exp(-|x|²) over R²": (
        lambda: cubature(lambda x: torch.exp(-(x**2).sum(1)), _t([-INF] * 2), _t([INF] * 2)),
        math.pi,
    ),
    "cubature adaptive: Π cos x_i on [0, 1]³": (
        lambda: cubature(
            lambda x: torch.cos(x).prod(1), torch.zeros(3, dtype=F32), torch.ones(3, dtype=F32)
        ),
        math.sin(1) ** 3,
    ),
    "cubature gauss-legendre: Π cos x_i on [0, 1]³": (
        lambda: cubature(
            lambda x: torch.cos(x).prod(1),
            torch.zeros(3, dtype=F32),
            torch.ones(3, dtype=F32),
            rule="gauss-legendre",
        ),
        math.sin(1) ** 3,
    ),
    "cubature sparse: Π cos x_i on [0, 1]³": (
        lambda: cubature(
            lambda x: torch.cos(x).prod(1),
            torch.zeros(3, dtype=F32),
            torch.ones(3, dtype=F32),
            rule="sparse",
        ),
        math.sin(1) ** 3,
    ),
    "expect_normal: E|X|² = tr Σ + |μ|²": (
        lambda: expect_normal(
            lambda x: (x**2).sum(1), _t([1.0, -1.0]), _t([[2.0, 0.5], [0.5, 1.0]])
        ),
        3.0 + 2.0,
    ),
    "expect_normal: E exp(X_1 + X_2), lognormal": (
        lambda: expect_normal(
            lambda x: torch.exp(x.sum(1)), _t([0.2, -0.1]), _t([[0.5, 0.1], [0.1, 0.3]])
        ),
        math.exp(0.1 + 0.5 * 1.0),
    ),
    "expect_normal sparse: E cos(ΣX_i), 5-D": (
        lambda: expect_normal(
            lambda x: torch.cos(x.sum(1)), torch.zeros(5, dtype=F32), 0.1 * torch.eye(5, dtype=F32)
        ),
        math.exp(-0.25),
    ),
    "log_integral: log ∫ exp(-10 - x²/2) over R": (
        lambda: log_integral(lambda x: -10 - x**2 / 2, _t(-INF), _t(INF)),
        -10 + 0.5 * math.log(2 * math.pi),
    ),
    "log_integral: a box, log ∫ exp(-50 - |x|²/2) over R²": (
        lambda: log_integral(lambda x: -50 - (x**2).sum(1) / 2, _t([-INF] * 2), _t([INF] * 2)),
        -50 + math.log(2 * math.pi),
    ),
}


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_input_at_the_default_tolerance_meets_it_with_an_honest_error(name):
    """torch's default dtype is float32: the defaults follow it (1000 eps rather than the
    float64 1e-8 or 1e-10 that float32 cannot meet), the result stays float32, lies within
    the tolerance of the closed form, and its reported error bounds the true error (for
    log_integral the error is that of the log)."""
    call, exact = FLOAT32_CASES[name]
    result = call()
    assert result.converged, result.message
    assert result.value.dtype == F32
    true_error = abs(float(result.value) - exact)
    scale = 1.0 if name.startswith("log_integral") else abs(exact)
    assert true_error <= DEFAULT_RTOL_32 * scale, (true_error, result)
    assert true_error <= float(result.error), "the reported error must bound the true error"


def test_float32_default_tolerance_is_1000_eps_and_float64_keeps_its_defaults():
    """The stopping rule error <= rtol |value| at the default: float32 stops once the
    estimate is within 1000 eps32 (not earlier, not later than needed to meet it); float64
    keeps 1e-10 (quad) and 1e-8 (cubature)."""
    f32 = quad(lambda x: torch.cos(3 * x), _t(0.0), _t(2.0))
    assert float(f32.error) <= DEFAULT_RTOL_32 * abs(float(f32.value))
    f64 = quad(lambda x: torch.cos(3 * x), 0.0, 2.0)
    assert abs(float(f64.value) - math.sin(6) / 3) <= 1e-10 * abs(math.sin(6) / 3)
    box = cubature(lambda x: torch.cos(x).prod(1), [0.0] * 2, [1.0] * 2)
    assert abs(float(box.value) - math.sin(1) ** 2) <= 1e-8 * math.sin(1) ** 2


def test_a_cancelling_float32_integral_stops_at_once_and_says_why():
    """∫_0^1 cos 50x = sin(50)/50 is 0.8 % of ∫|cos 50x|: 50 eps32 ∫|f| exceeds 1000 eps32
    |∫f|, so no refinement can meet the default rtol; once the rule's own error is below
    the round-off, the result says so (after 3 rounds) instead of splitting to max_evals,
    and an atol makes it converge. The same holds in float64 for an rtol of 1e-13."""
    with pytest.warns(pc.ConvergenceWarning, match="round-off alone exceeds the tolerance"):
        result = quad(lambda x: torch.cos(50 * x), _t(0.0), _t(1.0))
    assert not result.converged and result.n_evals <= 300
    with pytest.warns(pc.ConvergenceWarning, match=r"\|∫f\| is 0.0083 of ∫\|f\|"):
        result64 = quad(lambda x: torch.cos(50 * x), 0.0, 1.0, rtol=1e-13)
    assert result64.n_evals <= 300
    assert abs(float(result64.value) - math.sin(50) / 50) <= float(result64.error)
    exact = math.sin(50) / 50
    assert abs(float(result.value) - exact) <= float(result.error)
    with_atol = quad(lambda x: torch.cos(50 * x), _t(0.0), _t(1.0), atol=1e-5)
    assert with_atol.converged and abs(float(with_atol.value) - exact) <= 1e-5


def test_float32_kinks_near_an_end_other_than_zero_are_refined():
    """In float32 the nodes stop 4 ulps short of an end other than 0, a resolution of about
    4e-4 in the coordinate of that end's map; the region at the end is cut where its
    children keep clear of it (cut only at midpoints, a kink anywhere in [0.6, 0.88] of
    [0, 1] failed to converge)."""
    for w in (0.6, 0.75, 0.85):
        result = quad(lambda x, w=w: torch.abs(x - w), _t(0.0), _t(1.0))
        exact = (w**2 + (1 - w) ** 2) / 2
        assert result.converged, (w, result.message)
        assert abs(float(result.value) - exact) <= float(result.error)
        assert abs(float(result.value) - exact) <= DEFAULT_RTOL_32 * exact


def test_float32_and_float64_limits_promote_to_float64():
    result = quad(lambda x: x**2, _t(0.0), torch.tensor(1.0, dtype=torch.float64))
    assert result.value.dtype == torch.float64
    np.testing.assert_allclose(float(result.value), 1 / 3, rtol=1e-10)
