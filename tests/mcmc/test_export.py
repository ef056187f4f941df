"""MCMCResult to ArviZ InferenceData, checked against the result's own tensors and ArviZ's
summary; trace and rank plots, checked against numpy/scipy recomputations."""

import math
import sys
import types
import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest
import scipy.stats
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from probcalc.mcmc import nuts, summary_rows
from probcalc.mcmc.diagnostics import ess_bulk, ess_tail, rhat
from probcalc.mcmc.export import to_inference_data
from probcalc.mcmc.plot import plot
from probcalc.mcmc.result import MCMCResult

STATS = ("lp", "diverging", "acceptance_rate", "n_steps", "step_size")


@pytest.fixture(scope="module")
def nuts_result():
    """NUTS on a 2-D standard normal: 2 chains of 100 draws (too few for the ESS check,
    whose ConvergenceWarning is not the subject here)."""

    def log_prob(x):
        return -0.5 * (x**2).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nuts(log_prob, torch.zeros(2), chains=2, num_warmup=100, num_samples=100, seed=0)


def _result(samples, divergent=(), tree_depth=True, requires_grad=False):
    """An MCMCResult built by hand around ``samples`` (chains, draws, d); ``divergent``
    lists the (chain, draw) pairs marked divergent."""
    x = torch.as_tensor(samples)
    chains, draws, d = x.shape
    g = torch.Generator().manual_seed(3)
    divergences = torch.zeros(chains, draws, dtype=torch.bool)
    for chain, draw in divergent:
        divergences[chain, draw] = True
    depth = torch.randint(1, 6, (chains, draws), generator=g)
    return MCMCResult(
        samples=x.clone().requires_grad_(requires_grad),
        log_prob=-0.5 * (x**2).sum(-1),
        divergences=divergences,
        accept_prob=torch.rand(chains, draws, generator=g),
        num_steps=2**depth - 1,
        tree_depth=depth if tree_depth else None,
        step_size=torch.linspace(0.3, 0.6, chains),
        inverse_mass_matrix=torch.ones(chains, d),
        n_grad_evals=1234,
        rhat=rhat(x),
        ess_bulk=ess_bulk(x),
        ess_tail=ess_tail(x),
    )


def _gaussian_draws(chains, draws, d, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(chains, draws, d)).astype(dtype)


# ---------------------------------------------------------------- to_inference_data


def test_posterior_one_variable_x_by_default(nuts_result):
    idata = to_inference_data(nuts_result)
    x = idata.posterior["x"]
    assert x.dims == ("chain", "draw", "x_dim_0")
    assert x.shape == tuple(nuts_result.samples.shape)
    np.testing.assert_array_equal(x.values, nuts_result.samples.double().numpy())
    np.testing.assert_array_equal(x["x_dim_0"].values, np.arange(2))
    assert idata.posterior.attrs["inference_library"] == "probcalc"


def test_posterior_one_variable_per_name():
    samples = _gaussian_draws(3, 20, 3, seed=1)
    idata = to_inference_data(_result(samples), names=["mu", "log_sigma", "beta[0]"])
    assert list(idata.posterior.data_vars) == ["mu", "log_sigma", "beta[0]"]
    for i, name in enumerate(["mu", "log_sigma", "beta[0]"]):
        assert idata.posterior[name].dims == ("chain", "draw")
        np.testing.assert_array_equal(idata.posterior[name].values, samples[..., i])


@pytest.mark.parametrize("nuts_stats", [True, False], ids=["nuts", "hmc"])
def test_sample_stats_standard_names_and_values(nuts_stats):
    result = _result(_gaussian_draws(2, 30, 2), divergent=[(1, 4)], tree_depth=nuts_stats)
    stats = to_inference_data(result).sample_stats
    expected = {*STATS, "tree_depth"} if nuts_stats else set(STATS)
    assert set(stats.data_vars) == expected
    for name in stats.data_vars:
        assert stats[name].dims == ("chain", "draw")
    np.testing.assert_array_equal(stats["lp"].values, result.log_prob.numpy())
    np.testing.assert_array_equal(stats["diverging"].values, result.divergences.numpy())
    assert stats["diverging"].dtype == bool
    assert int(stats["diverging"].sum()) == 1
    np.testing.assert_array_equal(stats["acceptance_rate"].values, result.accept_prob.numpy())
    np.testing.assert_array_equal(stats["n_steps"].values, result.num_steps.numpy())
    if nuts_stats:
        np.testing.assert_array_equal(stats["tree_depth"].values, result.tree_depth.numpy())
    # each chain's step size on every one of its draws
    step = result.step_size.double().numpy()
    np.testing.assert_array_equal(stats["step_size"].values, np.repeat(step[:, None], 30, 1))
    assert stats.attrs["n_grad_evals"] == 1234


@pytest.mark.parametrize(
    "case",
    ["nuts_float32_2d", "hand_float64_4x57x3", "hand_float32_grad_1x40x2"],
)
def test_arviz_summary_equals_summary_rows(case, nuts_result):
    if case == "nuts_float32_2d":
        result, names = nuts_result, None
    elif case == "hand_float64_4x57x3":
        result, names = _result(_gaussian_draws(4, 57, 3, seed=5)), ["a", "b", "c"]
    else:
        draws = _gaussian_draws(1, 40, 2, seed=6, dtype=np.float32)
        result, names = _result(draws, requires_grad=True), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about R-hat of one chain
        table = az.summary(to_inference_data(result, names), round_to="none")
    rows = summary_rows(result.samples.detach(), names)
    assert list(table.index) == [row.name for row in rows]
    for row in rows:
        for ours, theirs in [
            ("mean", "mean"),
            ("sd", "sd"),
            ("mcse_mean", "mcse_mean"),
            ("ess_bulk", "ess_bulk"),
            ("ess_tail", "ess_tail"),
            ("r_hat", "r_hat"),
        ]:
            value = getattr(row, ours)
            if math.isnan(value):
                assert math.isnan(table.loc[row.name, theirs])
            else:
                assert table.loc[row.name, theirs] == pytest.approx(value, rel=1e-6), (
                    row.name,
                    ours,
                )


# ArviZ 0.23 calls a matplotlib helper that matplotlib 3.11 deprecates
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_arviz_trace_plot_marks_the_divergences():
    divergent = [(0, 3), (1, 17), (1, 25)]
    idata = to_inference_data(_result(_gaussian_draws(2, 40, 1), divergent=divergent))
    axes = az.plot_trace(idata, divergences="bottom")
    ticks = [
        line
        for line in axes[0, 1].get_lines()
        if line.get_marker() == "|" and line.get_color() == "black"
    ]
    drawn = sorted(int(x) for line in ticks for x in line.get_xdata())
    assert drawn == [3, 17, 25]
    plt.close("all")


@pytest.mark.parametrize(
    ("names", "error", "match"),
    [
        (["a"], ValueError, "one name per coordinate"),
        (["a", "b", "c"], ValueError, "one name per coordinate"),
        (["a", "a"], ValueError, "distinct"),
        (["a", 1], TypeError, "strings"),
        ("ab", TypeError, "list of 2 strings"),
        (["a", ""], ValueError, "non-empty"),
        (["chain", "b"], ValueError, "must not be"),
        (["a", "draw"], ValueError, "must not be"),
    ],
)
def test_bad_names_are_refused(names, error, match):
    result = _result(_gaussian_draws(2, 10, 2))
    with pytest.raises(error, match=match):
        to_inference_data(result, names)
    with pytest.raises(error, match=match):
        plot(result, names)


def test_not_a_result_is_refused():
    with pytest.raises(TypeError, match="MCMCResult"):
        to_inference_data(torch.zeros(2, 10, 2))
    with pytest.raises(TypeError, match="MCMCResult"):
        plot(np.zeros((2, 10, 2)))


def test_arviz_1_gets_its_grouped_from_dict_call(monkeypatch):
    """ArviZ 1.x's from_dict(data, *, dims, attrs) takes {group: {variable: array}}."""
    calls = []
    fake = types.SimpleNamespace(
        __version__="1.3.0", from_dict=lambda *args, **kwargs: calls.append((args, kwargs))
    )
    monkeypatch.setitem(sys.modules, "arviz", fake)
    result = _result(_gaussian_draws(2, 10, 2))
    to_inference_data(result)
    ((data,), kwargs) = calls[0]
    assert set(data) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(data["posterior"]["x"], result.samples.numpy())
    assert set(data["sample_stats"]) == {*STATS, "tree_depth"}
    assert kwargs["dims"] == {"x": ["x_dim_0"]}
    assert kwargs["attrs"]["sample_stats"]["n_grad_evals"] == 1234


def test_missing_arviz_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ImportError, match=r"pip install arviz \(or probcalc\[arviz\]\)"):
        to_inference_data(_result(_gaussian_draws(2, 10, 2)))


# ---------------------------------------------------------------- plot


def _panels(fig):
    """Axes by (title, x label): the trace and rank panels."""
    trace = [ax for ax in fig.axes if ax.get_xlabel() == "draw"]
    rank = [ax for ax in fig.axes if ax.get_xlabel() == "rank (all chains)"]
    return trace, rank


@pytest.mark.parametrize(
    ("kind", "columns"), [("both", ("trace", "rank")), ("trace", ("trace",)), ("rank", ("rank",))]
)
def test_plot_has_a_row_per_coordinate_and_a_column_per_kind(kind, columns, nuts_result):
    fig = plot(nuts_result, ["mu", "tau"], kind=kind)
    assert len(fig.axes) == 2 * len(columns)
    trace, rank = _panels(fig)
    assert len(trace) == (2 if "trace" in columns else 0)
    assert len(rank) == (2 if "rank" in columns else 0)
    assert [ax.get_title() for ax in fig.axes] == [name for name in ("mu", "tau") for _ in columns]
    plt.close(fig)


def test_trace_lines_are_each_chains_draws():
    samples = _gaussian_draws(3, 25, 2, seed=2)
    fig = plot(_result(samples), kind="trace")
    for i, ax in enumerate(fig.axes):
        chains = [line for line in ax.get_lines() if line.get_label().startswith("chain")]
        assert len(chains) == 3
        for c, line in enumerate(chains):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(25))
            np.testing.assert_array_equal(line.get_ydata(), samples[c, :, i])
    plt.close(fig)


def test_divergent_draws_are_marked_only_when_present():
    divergent = [(0, 7), (2, 7), (1, 19)]
    samples = _gaussian_draws(3, 30, 2, seed=4)
    fig = plot(_result(samples, divergent=divergent), kind="trace")
    for ax in fig.axes:
        marks = [line for line in ax.get_lines() if line.get_label() == "divergent"]
        assert len(marks) == 1
        assert sorted(marks[0].get_xdata().tolist()) == [7, 7, 19]
        assert marks[0].get_marker() == "|"
    plt.close(fig)
    fig = plot(_result(samples), kind="trace")
    for ax in fig.axes:
        assert not [line for line in ax.get_lines() if line.get_label() == "divergent"]
    plt.close(fig)


def _bar_counts(ax):
    """Each chain's bar heights, from the BarContainers on the axes."""
    return np.array([[patch.get_height() for patch in bars] for bars in ax.containers])


@pytest.mark.parametrize(
    ("case", "bins"),
    [("gaussian", None), ("gaussian", 7), ("ties", None), ("shifted_chain", 4)],
)
def test_rank_histograms_equal_a_scipy_recount(case, bins):
    rng = np.random.default_rng(8)
    samples = rng.normal(size=(3, 100, 2))
    if case == "ties":
        samples = np.round(samples)  # ties share their average rank
    if case == "shifted_chain":
        samples[2] += 10.0  # chain 2 above all others: ranks 201..300
    fig = plot(_result(samples), kind="rank", bins=bins)
    n_bins = 15 if bins is None else bins  # ceil(2 log2 100) + 1 = ceil(13.29) + 1
    edges = np.linspace(0.0, samples.shape[0] * samples.shape[1], n_bins + 1)
    for i, ax in enumerate(fig.axes):
        ranks = scipy.stats.rankdata(samples[..., i].ravel(), method="average")
        ranks = ranks.reshape(3, 100)
        expected = np.stack([np.histogram(row, bins=edges)[0] for row in ranks])
        counts = _bar_counts(ax)
        assert counts.shape == (3, n_bins)
        # a bar on a chain's offset stores (bottom + count) - bottom: equal up to rounding
        np.testing.assert_allclose(counts, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(counts.sum(axis=1), [100, 100, 100], rtol=0, atol=1e-9)
    if case == "shifted_chain":
        # bins of width 75: chain 2's ranks 201..300 fall 24 in [150, 225) and 76 in
        # [225, 300]; the other chains (ranks 1..200) never reach the top bin
        counts = _bar_counts(fig.axes[0])
        np.testing.assert_allclose(counts[2], [0, 0, 24, 76], rtol=0, atol=1e-9)
        assert counts[:2, 3].sum() == 0
    plt.close(fig)


def test_default_draws_the_first_max_coords_with_a_warning():
    result = _result(_gaussian_draws(2, 20, 12))
    with pytest.warns(UserWarning, match="first 8 of 12 coordinates"):
        fig = plot(result, kind="trace")
    assert [ax.get_title() for ax in fig.axes] == [f"x[{i}]" for i in range(8)]
    plt.close(fig)
    with pytest.warns(UserWarning, match="first 3 of 12"):
        fig = plot(result, kind="rank", max_coords=3)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_coords_pick_the_coordinates_without_a_warning():
    samples = _gaussian_draws(2, 20, 12)
    samples[1, :, 9] += 5.0  # coordinate 9 mixes worst
    result = _result(samples)
    names = [f"theta_{i}" for i in range(12)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot(result, names, kind="trace", coords=[11, 0, 5])
        assert [ax.get_title() for ax in fig.axes] == ["theta_11", "theta_0", "theta_5"]
        plt.close(fig)
        worst = result.rhat.argsort(descending=True)[:2]
        fig = plot(result, names, kind="trace", coords=worst)
        assert fig.axes[0].get_title() == "theta_9"
        assert len(fig.axes) == 2
        plt.close(fig)
        fig = plot(result, kind="both", coords=list(range(12)))  # all, past max_coords
        assert len(fig.axes) == 24
        plt.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "hist"}, ValueError, "kind must be one of"),
        ({"coords": [2]}, ValueError, r"indices in 0\.\.1"),
        ({"coords": [-1]}, ValueError, r"indices in 0\.\.1"),
        ({"coords": [0, 0]}, ValueError, "distinct"),
        ({"coords": []}, ValueError, "non-empty"),
        ({"coords": [0.0]}, TypeError, "ints"),
        ({"coords": 0}, TypeError, "sequence"),
        ({"coords": torch.zeros(1, 1, dtype=torch.long)}, ValueError, "1-D"),
        ({"max_coords": 0}, ValueError, "max_coords must be an int >= 1"),
        ({"max_coords": 2.5}, TypeError, "max_coords must be an int"),
        ({"bins": 0}, ValueError, "bins must be an int >= 1"),
        ({"bins": True}, TypeError, "bins must be an int"),
    ],
)
def test_bad_plot_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        plot(_result(_gaussian_draws(2, 10, 2)), **kwargs)


def test_missing_matplotlib_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib \(or probcalc\[plot\]\)"):
        plot(_result(_gaussian_draws(2, 10, 2)))
