"""MCMC diagnostics against ArviZ's implementation (an independent numpy code of the same
definitions), closed forms for AR(1) chains, and the input checks."""

import logging
import math
import warnings
import zlib

import arviz as az
import numpy as np
import pytest
import scipy.signal
import torch

from probcalc.mcmc.diagnostics import (
    SummaryRow,
    ess_bulk,
    ess_tail,
    mcse_mean,
    rhat,
    summary_rows,
    summary_table,
)

logging.getLogger("arviz").setLevel(logging.ERROR)  # ArviZ logs a warning for one chain

RTOL = 1e-6


def _ar1(rng, chains, draws, rho, event=()):
    """Stationary AR(1) chains with unit variance: x_t = rho x_(t-1) + sqrt(1 - rho^2) e_t."""
    innovations = rng.normal(size=(chains, draws, *event))
    drive = math.sqrt(1.0 - rho**2) * innovations
    drive[:, 0] = innovations[:, 0]  # x_0 ~ N(0, 1), the stationary law
    return scipy.signal.lfilter([1.0], [1.0, -rho], drive, axis=1)


def _case(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return {
        "iid_4x200": lambda: rng.normal(size=(4, 200)),
        "iid_4x201_event3": lambda: rng.normal(size=(4, 201, 3)),
        "iid_1x101": lambda: rng.normal(size=(1, 101)),
        "ar05_4x300_event2x3": lambda: _ar1(rng, 4, 300, 0.5, (2, 3)),
        "ar095_4x301": lambda: _ar1(rng, 4, 301, 0.95),
        "ar095_1x400_event3": lambda: _ar1(rng, 1, 400, 0.95, (3,)),
        "ar05_1x200_event2x3": lambda: _ar1(rng, 1, 200, 0.5, (2, 3)),
        "shifted_means_4x100_event3": lambda: (
            rng.normal(size=(4, 100, 3)) + np.arange(4.0)[:, None, None]
        ),
        "anticorrelated_3x40_event2": lambda: _ar1(rng, 3, 40, -0.9, (2,)),
        "rounded_ar099_2x57": lambda: np.round(_ar1(rng, 2, 57, 0.99), 1),
        "cauchy_4x151_event2x3": lambda: rng.standard_cauchy(size=(4, 151, 2, 3)),
        "cauchy_4x150": lambda: rng.standard_cauchy(size=(4, 150)),
        "fewest_draws_2x4": lambda: rng.normal(size=(2, 4)),
        "odd_fewest_3x5_event2": lambda: rng.normal(size=(3, 5, 2)),
        "ties_binary_4x100": lambda: rng.integers(0, 2, size=(4, 100)).astype(float),
        "ties_poisson_3x81_event2": lambda: rng.poisson(2.0, size=(3, 81, 2)).astype(float),
        "constant_4x50_event2": lambda: np.full((4, 50, 2), 1.5),
    }[name]()


CASES = [
    "iid_4x200",
    "iid_4x201_event3",
    "iid_1x101",
    "ar05_4x300_event2x3",
    "ar095_4x301",
    "ar095_1x400_event3",
    "ar05_1x200_event2x3",
    "shifted_means_4x100_event3",
    "anticorrelated_3x40_event2",
    "rounded_ar099_2x57",
    "cauchy_4x151_event2x3",
    "cauchy_4x150",
    "fewest_draws_2x4",
    "odd_fewest_3x5_event2",
    "ties_binary_4x100",
    "ties_poisson_3x81_event2",
    "constant_4x50_event2",
]


def _arviz(x, function):
    dataset = az.convert_to_dataset(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ArviZ's 0/0 for constant draws
        return np.asarray(function(dataset)["x"].values, dtype=float)


ARVIZ = {
    "rhat": (rhat, az.rhat),
    "ess_bulk": (ess_bulk, lambda d: az.ess(d, method="bulk")),
    "ess_tail": (ess_tail, lambda d: az.ess(d, method="tail")),
    "mcse_mean": (mcse_mean, lambda d: az.mcse(d, method="mean")),
}


@pytest.mark.parametrize("statistic", sorted(ARVIZ))
@pytest.mark.parametrize("case", CASES)
def test_statistics_equal_arviz(case, statistic):
    x = _case(case)
    ours, theirs = ARVIZ[statistic]
    got = ours(torch.from_numpy(x))
    expected = _arviz(x, theirs)
    assert got.dtype == torch.float64
    assert tuple(got.shape) == x.shape[2:]
    np.testing.assert_array_equal(np.isnan(got.numpy()), np.isnan(expected))
    np.testing.assert_allclose(got.numpy(), expected, rtol=RTOL, atol=0)


def test_rhat_flags_chains_with_different_means_and_not_iid_chains():
    x = _case("shifted_means_4x100_event3")
    assert bool((rhat(x) > 1.5).all())
    assert bool((rhat(_case("iid_4x200")) < 1.05).all())


@pytest.mark.parametrize("case", ["iid_1x101", "ar095_1x400_event3"])
def test_rhat_of_one_chain_is_nan_as_in_arviz(case):
    assert bool(torch.isnan(rhat(_case(case))).all())


def test_constant_draws_follow_arviz_conventions():
    x = _case("constant_4x50_event2")
    assert bool(torch.isnan(rhat(x)).all())
    # ArviZ counts the split draws of a constant coordinate: 4 chains * 2 * 25
    assert ess_bulk(x).tolist() == [200.0, 200.0]
    assert ess_tail(x).tolist() == [200.0, 200.0]
    assert mcse_mean(x).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_and_mcse_of_ar1_chains_match_the_closed_form(rho):
    # an AR(1) chain's integrated autocorrelation time is (1 + rho) / (1 - rho)
    rng = np.random.default_rng(7)
    x = torch.from_numpy(_ar1(rng, 4, 10_000, rho, (3,)))
    tau = (1.0 + rho) / (1.0 - rho)
    n_total = 4 * 10_000
    torch.testing.assert_close(ess_bulk(x), torch.full((3,), n_total / tau), rtol=0.15, atol=0)
    expected_mcse = torch.full((3,), math.sqrt(tau / n_total))  # unit stationary variance
    torch.testing.assert_close(mcse_mean(x), expected_mcse, rtol=0.1, atol=0)


def test_rank_statistics_do_not_change_under_a_monotone_transform():
    x = torch.from_numpy(_case("ar05_4x300_event2x3"))
    y = torch.exp(2.0 * x) - 3.0
    torch.testing.assert_close(ess_bulk(y), ess_bulk(x), rtol=1e-12, atol=0)
    torch.testing.assert_close(ess_tail(y), ess_tail(x), rtol=1e-12, atol=0)


def test_coordinates_are_independent_of_each_other():
    x = torch.from_numpy(_case("cauchy_4x151_event2x3"))
    for function in (rhat, ess_bulk, ess_tail, mcse_mean):
        whole = function(x)
        for i in range(2):
            for j in range(3):
                torch.testing.assert_close(whole[i, j], function(x[:, :, i, j]), rtol=1e-12, atol=0)


def test_accepts_float32_numpy_and_tensors_that_require_grad():
    x64 = _case("ar05_4x300_event2x3")
    expected = ess_bulk(torch.from_numpy(x64))
    x32 = torch.from_numpy(x64).float()
    got = ess_bulk(x32)
    assert got.dtype == torch.float64 and got.device == x32.device
    torch.testing.assert_close(ess_bulk(x32.double()), got, rtol=0, atol=0)
    torch.testing.assert_close(ess_bulk(x64), expected, rtol=0, atol=0)
    leaf = torch.from_numpy(x64).requires_grad_()
    assert not rhat(leaf).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_results_stay_on_the_inputs_device():
    x = torch.from_numpy(_case("cauchy_4x151_event2x3"))
    for function in (rhat, ess_bulk, ess_tail, mcse_mean):
        got = function(x.cuda())
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), function(x), rtol=1e-10, atol=0)


@pytest.mark.parametrize("function", [rhat, ess_bulk, ess_tail, mcse_mean, summary_rows])
@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([[1.0, 2.0, 3.0, 4.0]], TypeError, "torch.Tensor or numpy array"),
        (np.array([["a"] * 5]), TypeError, "real numbers"),
        (torch.ones(2, 5, dtype=torch.complex128), TypeError, "real numbers"),
        (torch.ones(5), ValueError, r"\(chains, draws, \*event\)"),
        (torch.randn(4, 3, 2), ValueError, "at least 4 draws"),
        (torch.randn(0, 10), ValueError, "at least one chain"),
        (torch.randn(2, 10, 0), ValueError, "no coordinates"),
        (torch.tensor([[0.0, 1.0, math.nan, 2.0, 3.0]]), ValueError, r"finite.*\(0, 2\)"),
        (torch.tensor([[0.0, 1.0, 2.0, 3.0, math.inf]]), ValueError, "finite"),
    ],
)
def test_bad_input_is_refused_with_a_named_error(function, bad, error, match):
    with pytest.raises(error, match=match):
        function(bad)


def test_summary_rows_match_numpy_and_arviz():
    x = _case("ar05_4x300_event2x3")
    rows = summary_rows(torch.from_numpy(x))
    assert [row.name for row in rows] == [f"x[{i}, {j}]" for i in range(2) for j in range(3)]
    flat = x.reshape(4 * 300, 6)
    np.testing.assert_allclose([r.mean for r in rows], flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose([r.sd for r in rows], flat.std(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose([r.q5 for r in rows], np.quantile(flat, 0.05, axis=0), rtol=1e-12)
    np.testing.assert_allclose([r.q95 for r in rows], np.quantile(flat, 0.95, axis=0), rtol=1e-12)
    for field, (_, theirs) in [
        ("mcse_mean", ARVIZ["mcse_mean"]),
        ("ess_bulk", ARVIZ["ess_bulk"]),
        ("ess_tail", ARVIZ["ess_tail"]),
        ("r_hat", ARVIZ["rhat"]),
    ]:
        expected = _arviz(x, theirs).reshape(-1)
        np.testing.assert_allclose([getattr(r, field) for r in rows], expected, rtol=RTOL)


def test_summary_rows_names():
    x = torch.randn(2, 20, 3)
    assert [r.name for r in summary_rows(x, names=["a", "b", "c"])] == ["a", "b", "c"]
    assert [r.name for r in summary_rows(x[..., 0])] == ["x"]
    assert isinstance(summary_rows(x)[0], SummaryRow)
    with pytest.raises(ValueError, match="3 for event shape"):
        summary_rows(x, names=["a", "b"])
    with pytest.raises(TypeError, match="sequence of 3 strings"):
        summary_rows(x, names="abc")
    with pytest.raises(TypeError, match="strings"):
        summary_rows(x, names=["a", 1, "c"])


def test_summary_table_shows_every_row_rounded():
    x = torch.from_numpy(_case("shifted_means_4x100_event3"))
    rows = summary_rows(x, names=["alpha", "beta", "gamma"])
    lines = summary_table(x, names=["alpha", "beta", "gamma"]).splitlines()
    assert lines[0].split() == [
        "mean", "sd", "5%", "95%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"
    ]  # fmt: skip
    assert len(lines) == 4
    for row, line in zip(rows, lines[1:], strict=True):
        name, *cells = line.split()
        assert name == row.name
        values = [float(c) for c in cells]
        expected = [row.mean, row.sd, row.q5, row.q95, row.mcse_mean]
        np.testing.assert_allclose(values[:5], expected, rtol=1e-3)
        assert values[5:7] == [round(row.ess_bulk), round(row.ess_tail)]
        assert values[7] == pytest.approx(row.r_hat, abs=5e-4)
    one_chain = summary_table(x[:1]).splitlines()
    assert all(line.split()[-1] == "nan" for line in one_chain[1:])
