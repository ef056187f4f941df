"""Trace and rank plots of an :class:`MCMCResult`, drawn with matplotlib alone.

matplotlib is optional: it is imported when :func:`plot` is called (``pip install
matplotlib`` or ``probcalc[plot]``).
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.stats
import torch

from .export import check_names, check_result
from .result import MCMCResult, check_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot", "rank_bins"]

KINDS = ("trace", "rank", "both")
DEFAULT_MAX_COORDS = 8


def rank_bins(draws: int) -> int:
    """ArviZ's default bin count of a rank plot: ceil(2 log2(draws per chain)) + 1."""
    return math.ceil(2.0 * math.log2(draws)) + 1


def _check_coords(coords: object, d: int) -> list[int]:
    """``coords`` as a list of distinct indices in 0..d-1."""
    if isinstance(coords, torch.Tensor | np.ndarray):
        if coords.ndim != 1:
            raise ValueError(
                f"coords must be a 1-D sequence of coordinate indices, got shape "
                f"{tuple(coords.shape)}"
            )
        coords = coords.tolist()
    if isinstance(coords, str) or not isinstance(coords, Sequence):
        raise TypeError(
            f"coords must be a sequence of coordinate indices in 0..{d - 1} (or None), got "
            f"{type(coords).__name__} {coords!r}"
        )
    if len(coords) == 0:
        raise ValueError(
            f"coords must be a non-empty sequence of coordinate indices in 0..{d - 1} (or "
            f"None), got {coords!r}"
        )
    for index in coords:
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(f"coords must hold ints, got {index!r} ({type(index).__name__})")
        if not 0 <= index < d:
            raise ValueError(f"coords must be indices in 0..{d - 1} (d = {d}), got {index}")
    if len(set(coords)) != len(coords):
        raise ValueError(f"coords must be distinct, got {list(coords)!r}")
    return [int(index) for index in coords]


def _trace(ax: Axes, values: np.ndarray, divergent: np.ndarray, name: str) -> None:
    """Each chain's draws against the draw index; divergent transitions as black ticks
    along the bottom edge at their draw index."""
    draw = np.arange(values.shape[1])
    for chain, row in enumerate(values):
        ax.plot(draw, row, color=f"C{chain}", lw=0.8, alpha=0.8, label=f"chain {chain}")
    _, div_draws = np.nonzero(divergent)
    if div_draws.size:
        ax.plot(
            div_draws,
            np.zeros(div_draws.size),
            transform=ax.get_xaxis_transform(),  # x in draws, y in axes fraction
            ls="",
            marker="|",
            markersize=12,
            markeredgewidth=1.5,
            color="black",
            label="divergent",
        )
    ax.set_title(name)
    ax.set_xlabel("draw")
    ax.set_xlim(0, max(values.shape[1] - 1, 1))


def _rank(ax: Axes, values: np.ndarray, bins: int, name: str) -> None:
    """Per chain, a histogram of the ranks of its draws among all chains' draws (ties
    averaged), the chains stacked upwards, each with a dashed line at the count a uniform
    histogram would have."""
    chains, draws = values.shape
    ranks = scipy.stats.rankdata(values, method="average", axis=None).reshape(values.shape)
    edges = np.histogram_bin_edges(ranks, bins=bins, range=(0, ranks.size))
    counts = np.stack([np.histogram(row, bins=edges)[0] for row in ranks])
    expected = draws / bins
    height = 1.15 * max(float(counts.max()), expected)
    centres = (edges[1:] + edges[:-1]) / 2.0
    for chain in range(chains):
        bottom = chain * height
        ax.bar(
            centres,
            counts[chain],
            width=edges[1] - edges[0],
            bottom=bottom,
            color=f"C{chain}",
            edgecolor="white",
            label=f"chain {chain}",
        )
        ax.axhline(bottom + expected, ls="--", color="black", lw=0.8)
    ax.set_yticks([chain * height for chain in range(chains)], [str(c) for c in range(chains)])
    ax.set_ylabel("chain")
    ax.set_xlabel("rank (all chains)")
    ax.set_xlim(0, ranks.size)
    ax.set_title(name)


def plot(
    result: MCMCResult,
    names: Sequence[str] | None = None,
    *,
    kind: str = "both",
    coords: Sequence[int] | None = None,
    max_coords: int = DEFAULT_MAX_COORDS,
    bins: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Trace and rank plots of chosen coordinates, one row per coordinate.

    - trace: each chain's draws against the draw index (chain c in colour ``C{c}``), with
      divergent transitions as black ticks along the bottom edge at their draw index.
    - rank: the rank plot of Vehtari et al. (2021): every draw of the coordinate is ranked
      among all chains' draws (ties get their average rank), and each chain's ranks are
      histogrammed on ``bins`` equal bins over [0, chains * draws], the chains stacked
      upwards with a dashed line at the uniform count draws / bins. Chains that sample the
      same distribution give flat histograms; a chain stuck high or low shows a slope.

    Without ``coords``, the first ``min(d, max_coords)`` coordinates are drawn, with a
    UserWarning naming how many were left out when d > max_coords. To see the worst-mixing
    coordinates, pass ``coords=result.rhat.argsort(descending=True)[:8]``.

    Args:
        result: what :func:`probcalc.mcmc.nuts` or :func:`probcalc.mcmc.hmc` returned.
        names: one name per coordinate (all d of them), used as titles; ``x[0]``,
            ``x[1]``, ... when None.
        kind: ``"trace"``, ``"rank"`` or ``"both"`` (trace left, rank right).
        coords: indices of the coordinates to draw, in order (a sequence, or a 1-D tensor
            or array of ints); all of them are drawn, ``max_coords`` does not apply.
        max_coords: how many coordinates to draw at most when ``coords`` is None.
        bins: bins of a rank histogram; ceil(2 log2(draws)) + 1 when None, as in ArviZ.
        figsize: the figure's (width, height) in inches; 6 by 2.2 per panel when None.

    Returns:
        A matplotlib Figure with ``rows x columns`` axes (rows = coordinates drawn,
        columns = 1, or 2 for ``"both"``), made with ``pyplot.subplots``: show it with
        ``pyplot.show()`` or write it with ``fig.savefig``.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError: result is not an MCMCResult; names is not a sequence of strings; coords
            is not a sequence of ints; max_coords or bins is not an int.
        ValueError: kind is not one of the three; names has not d distinct entries; coords
            is empty or holds an index outside 0..d-1 or a repeat; max_coords or bins is
            below 1.
    """
    check_result(result, "plot")
    d = result.samples.shape[-1]
    labels = check_names(names, d) or [f"x[{i}]" for i in range(d)]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    max_coords = check_int(max_coords, "max_coords", 1)
    draws = result.samples.shape[1]
    bins = rank_bins(draws) if bins is None else check_int(bins, "bins", 1)
    if coords is None:
        chosen = list(range(min(d, max_coords)))
        if d > max_coords:
            warnings.warn(
                f"plot draws the first {max_coords} of {d} coordinates; pass coords= (the "
                f"indices to draw) or a larger max_coords= to see others",
                UserWarning,
                stacklevel=2,
            )
    else:
        chosen = _check_coords(coords, d)
    try:
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise ImportError(
            "plot needs matplotlib: pip install matplotlib (or probcalc[plot])"
        ) from None

    values = result.samples.detach().to(device="cpu", dtype=torch.float64).numpy()
    divergent = result.divergences.detach().cpu().numpy().astype(bool)
    panels = ("trace", "rank") if kind == "both" else (kind,)
    rows, columns = len(chosen), len(panels)
    if figsize is None:
        figsize = (6.0 * columns, 2.2 * rows)
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False, layout="constrained")
    for row, index in enumerate(chosen):
        for column, panel in enumerate(panels):
            ax = axes[row, column]
            if panel == "trace":
                _trace(ax, values[..., index], divergent, labels[index])
            else:
                _rank(ax, values[..., index], bins, labels[index])
    return fig
