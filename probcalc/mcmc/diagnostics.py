"""Convergence diagnostics for MCMC draws: rank-normalized split R-hat, bulk and tail
effective sample sizes and the Monte Carlo standard error of the mean.

The definitions are those of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", Bayesian Analysis 16(2), computed as ArviZ computes them
(``arviz.rhat``, ``arviz.ess(method="bulk" | "tail")``, ``arviz.mcse(method="mean")``),
including ArviZ's conventions for edge cases. They are written here in torch, vectorized
over the event dimensions and run on the draws' device, because ArviZ works on numpy arrays
one coordinate at a time and is not a dependency of probcalc.

Draws are shaped ``(chains, draws, *event)``; every function returns a float64 tensor of
shape ``event`` on the input's device. Arithmetic is in float64 whatever the input dtype.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "SummaryRow",
    "ess_bulk",
    "ess_tail",
    "mcse_mean",
    "rhat",
    "summary_rows",
    "summary_table",
]

_MIN_DRAWS = 4
# Blom's (1958) fractional offset for the normal scores of ranks, as in ArviZ.
_BLOM_OFFSET = 3.0 / 8.0
# ArviZ treats a coordinate whose values span less than this as constant.
_CONSTANT_SPAN = float(np.finfo(np.float64).resolution)


def _as_draws(x: object, name: str = "x") -> tuple[torch.Tensor, torch.Size]:
    """Check ``x`` and return it as a float64 tensor ``(E, chains, draws)`` with the event
    dimensions flattened in front, and the event shape."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers; got a numpy array of dtype {x.dtype}.")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array shaped (chains, draws, *event); "
            f"got {type(x).__name__}."
        )
    if x.is_complex():
        raise TypeError(f"{name} must hold real numbers; got a tensor of dtype {x.dtype}.")
    if x.dim() < 2:
        raise ValueError(
            f"{name} must be shaped (chains, draws, *event); got shape {tuple(x.shape)}. "
            "Add a chain dimension for a single chain: x[None]."
        )
    chains, draws = x.shape[0], x.shape[1]
    if chains < 1:
        raise ValueError(f"{name} must hold at least one chain; got shape {tuple(x.shape)}.")
    if draws < _MIN_DRAWS:
        raise ValueError(
            f"{name} must hold at least {_MIN_DRAWS} draws per chain (dimension 1); "
            f"got {draws} (shape {tuple(x.shape)})."
        )
    event_shape = x.shape[2:]
    if x.numel() == 0:
        raise ValueError(f"{name} holds no coordinates; got shape {tuple(x.shape)}.")
    y = x.detach().to(torch.float64)
    finite = torch.isfinite(y)
    if not bool(finite.all()):
        first = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"{name} must hold finite draws; {int((~finite).sum())} are NaN or infinite, "
            f"the first at index {first} (value {y[first].item()})."
        )
    y = y.reshape(chains, draws, -1).permute(2, 0, 1)
    return y, event_shape


def _split_chains(y: torch.Tensor) -> torch.Tensor:
    """(E, C, N) -> (E, 2C, N // 2): first and last halves as separate chains (a middle
    draw of an odd count is dropped, as ArviZ does)."""
    half = y.shape[-1] // 2
    return torch.cat((y[..., :half], y[..., y.shape[-1] - half :]), dim=-2)


def _average_ranks(flat: torch.Tensor) -> torch.Tensor:
    """Ranks 1..M along the last dimension, ties given their average rank
    (``scipy.stats.rankdata(method="average")``), vectorized over leading dimensions."""
    m = flat.shape[-1]
    values, order = torch.sort(flat, dim=-1, stable=True)
    idx = torch.arange(m, device=flat.device).expand_as(values)
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[..., 1:] = values[..., 1:] != values[..., :-1]
    last_of_group = torch.ones_like(values, dtype=torch.bool)
    last_of_group[..., :-1] = new_group[..., 1:]
    first = torch.where(new_group, idx, torch.zeros_like(idx)).cummax(dim=-1).values
    last = torch.where(last_of_group, idx, torch.full_like(idx, m)).flip(-1)
    last = last.cummin(dim=-1).values.flip(-1)
    sorted_ranks = (first + last).to(torch.float64) / 2.0 + 1.0
    return torch.empty_like(sorted_ranks).scatter_(-1, order, sorted_ranks)


def _z_scale(y: torch.Tensor) -> torch.Tensor:
    """Rank-normalize (E, C, N) over all chains and draws of each coordinate:
    ``Phi^-1((rank - 3/8) / (M + 1/4))`` with M = C N."""
    flat = y.reshape(y.shape[0], -1)
    size = flat.shape[-1]
    u = (_average_ranks(flat) - _BLOM_OFFSET) / (size - 2 * _BLOM_OFFSET + 1)
    return torch.special.ndtri(u).reshape(y.shape)


def _median(flat: torch.Tensor) -> torch.Tensor:
    """numpy's median along the last dimension (the mean of the two middle values for an
    even count; torch.median returns the lower one)."""
    m = flat.shape[-1]
    upper = torch.kthvalue(flat, m // 2 + 1, dim=-1).values
    if m % 2:
        return upper
    return (torch.kthvalue(flat, m // 2, dim=-1).values + upper) / 2.0


def _rhat_basic(y: torch.Tensor) -> torch.Tensor:
    """Gelman-Rubin R-hat of (E, C, N): sqrt((B/W + N - 1) / N), B = N var(chain means),
    W = mean within-chain variance. NaN where W = B = 0, inf where only W = 0."""
    n = y.shape[-1]
    between = n * torch.var(y.mean(dim=-1), dim=-1, correction=1)
    within = torch.var(y, dim=-1, correction=1).mean(dim=-1)
    return torch.sqrt((between / within + n - 1) / n)


def _autocov(y: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance at every lag along the last dimension, by FFT with zero
    padding to 2N (no wrap-around)."""
    n = y.shape[-1]
    centred = y - y.mean(dim=-1, keepdim=True)
    spectrum = torch.fft.rfft(centred, n=2 * n, dim=-1)
    power = spectrum * spectrum.conj()
    return torch.fft.irfft(power, n=2 * n, dim=-1)[..., :n] / n


def _ess_basic(y: torch.Tensor) -> torch.Tensor:
    """Effective sample size of (E, C, N) with Geyer's initial monotone sequence on the
    multi-chain autocorrelation, as ``arviz.stats.diagnostics._ess``.

    ArviZ's sequential loops are rewritten over the pair sums P_k = rho_2k + rho_2k+1
    (rho_0 = 1): the positive sequence stops at the first K with not P_K > 0 (or at the
    last pair the draw count allows); the monotone sequence replaces P_k by
    min(P_0..P_k) for k < K; the truncated term rho_2K counts when P_K >= 0 or rho_2K > 0.
    """
    n_chain, n_draw = y.shape[-2], y.shape[-1]
    size = n_chain * n_draw
    acov = _autocov(y)
    mean_acov = acov.mean(dim=-2)  # (E, N)
    mean_var = mean_acov[..., 0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + torch.var(y.mean(dim=-1), dim=-1, correction=1)
    rho = 1.0 - (mean_var[..., None] - mean_acov) / var_plus[..., None]
    rho = rho.clone()
    rho[..., 0] = 1.0

    n_iter = len(range(1, n_draw - 3, 2))  # iterations ArviZ's positive-sequence loop may run
    pairs = rho[..., 0 : 2 * n_iter + 2].reshape(*rho.shape[:-1], n_iter + 1, 2)
    pair_sum = pairs[..., 0] + pairs[..., 1]  # (E, n_iter + 1)
    stop = ~(pair_sum > 0)
    stop[..., n_iter] = True
    last = stop.to(torch.int8).argmax(dim=-1)  # K, first stopping pair
    monotone = pair_sum.cummin(dim=-1).values
    cumulative = torch.cat((torch.zeros_like(monotone[..., :1]), monotone.cumsum(dim=-1)), -1)
    head = cumulative.gather(-1, last[..., None]).squeeze(-1)  # sum of P'_k, k < K
    rho_last = rho.gather(-1, (2 * last)[..., None]).squeeze(-1)
    pair_last = pair_sum.gather(-1, last[..., None]).squeeze(-1)
    tail = torch.where((pair_last >= 0) | (rho_last > 0), rho_last, torch.zeros_like(rho_last))
    tau = -1.0 + 2.0 * head + tail
    tau = torch.clamp(tau, min=1.0 / math.log10(size))
    ess = size / tau
    ess = torch.where(torch.isnan(rho[..., 1]), torch.full_like(ess, math.nan), ess)
    span = y.amax(dim=(-2, -1)) - y.amin(dim=(-2, -1))
    return torch.where(span < _CONSTANT_SPAN, torch.full_like(ess, float(size)), ess)


def _quantile_type7(flat: torch.Tensor, prob: float) -> torch.Tensor:
    """Quantile along the last dimension by R's type 7 rule, with the arithmetic of
    ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)`` that ArviZ uses."""
    n = flat.shape[-1]
    aleph = n * prob + (1.0 + prob * (1.0 - 1.0 - 1.0))
    k = math.floor(min(max(aleph, 1), n - 1))
    gamma = min(max(aleph - k, 0.0), 1.0)
    # the k-th and (k+1)-th smallest values (1-based), by selection rather than a sort
    below = torch.kthvalue(flat, k, dim=-1).values
    above = torch.kthvalue(flat, k + 1, dim=-1).values
    return (1.0 - gamma) * below + gamma * above


def _ess_quantile(y: torch.Tensor, prob: float) -> torch.Tensor:
    """ESS of the indicator ``x <= q_prob`` on split chains."""
    q = _quantile_type7(y.reshape(y.shape[0], -1), prob)
    indicator = (y <= q[..., None, None]).to(torch.float64)
    return _ess_basic(_split_chains(indicator))


def _rhat_rank(y: torch.Tensor) -> torch.Tensor:
    """Rank-normalized split R-hat of checked draws (E, C, N) -> (E,)."""
    if y.shape[-2] < 2:
        return torch.full(y.shape[:1], math.nan, dtype=torch.float64, device=y.device)
    split = _split_chains(y)
    bulk = _rhat_basic(_z_scale(split))
    folded = (split - _median(split.reshape(split.shape[0], -1))[..., None, None]).abs()
    tail = _rhat_basic(_z_scale(folded))
    # Python's max(bulk, tail), as ArviZ: NaN when bulk is NaN, bulk when tail is NaN.
    return torch.where(torch.isnan(bulk) | ~(tail > bulk), bulk, tail)


def _ess_bulk(y: torch.Tensor) -> torch.Tensor:
    return _ess_basic(_z_scale(_split_chains(y)))


def _ess_tail(y: torch.Tensor) -> torch.Tensor:
    low = _ess_quantile(y, 0.05)
    high = _ess_quantile(y, 0.95)
    # Python's min(low, high), as ArviZ: NaN when low is NaN, low when high is NaN.
    return torch.where(torch.isnan(low) | ~(high < low), low, high)


def _mcse_mean(y: torch.Tensor) -> torch.Tensor:
    sd = torch.std(y.reshape(y.shape[0], -1), dim=-1, correction=1)
    return sd / torch.sqrt(_ess_basic(_split_chains(y)))


def _finish(value: torch.Tensor, event_shape: torch.Size, like: object) -> torch.Tensor:
    device = like.device if isinstance(like, torch.Tensor) else torch.device("cpu")
    return value.reshape(event_shape).to(device)


def rhat(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Rank-normalized split R-hat: the larger of the R-hat of the rank-normalized split
    chains (bulk) and of the rank-normalized |x - median| (tail), per coordinate.

    Values near 1 (below about 1.01) suggest the chains agree.

    Args:
        x: draws shaped (chains, draws, *event), a tensor or numpy array of real numbers.

    Returns:
        float64 tensor shaped ``event`` on x's device. As in ArviZ it is NaN for a single
        chain (split R-hat needs two chains before splitting) and for a coordinate whose
        draws are all equal; when only the folded statistic is undefined, the bulk value
        is returned.

    Raises:
        TypeError: x is not a real tensor or numpy array.
        ValueError: x has fewer than 2 dimensions, fewer than 4 draws, or a NaN/inf draw.
    """
    y, event_shape = _as_draws(x)
    return _finish(_rhat_rank(y), event_shape, x)


def ess_bulk(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Bulk effective sample size: the ESS of the rank-normalized split chains, per
    coordinate (Geyer's initial monotone sequence on the FFT autocovariance).

    Args:
        x: draws shaped (chains, draws, *event), a tensor or numpy array of real numbers.

    Returns:
        float64 tensor shaped ``event`` on x's device. A coordinate whose draws are all
        equal gets the number of split draws, chains * 2 * (draws // 2), as in ArviZ.

    Raises:
        TypeError: x is not a real tensor or numpy array.
        ValueError: x has fewer than 2 dimensions, fewer than 4 draws, or a NaN/inf draw.
    """
    y, event_shape = _as_draws(x)
    return _finish(_ess_bulk(y), event_shape, x)


def ess_tail(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tail effective sample size: the smaller of the split-chain ESS of the indicators
    x <= q_0.05 and x <= q_0.95 (quantiles over all draws of a coordinate, R's type 7).

    Args:
        x: draws shaped (chains, draws, *event), a tensor or numpy array of real numbers.

    Returns:
        float64 tensor shaped ``event`` on x's device; a coordinate whose draws are all
        equal gets chains * 2 * (draws // 2), as in ArviZ.

    Raises:
        TypeError: x is not a real tensor or numpy array.
        ValueError: x has fewer than 2 dimensions, fewer than 4 draws, or a NaN/inf draw.
    """
    y, event_shape = _as_draws(x)
    return _finish(_ess_tail(y), event_shape, x)


def mcse_mean(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Monte Carlo standard error of the posterior mean: sd / sqrt(ESS), with sd the
    standard deviation of all draws (ddof 1) and ESS that of the split chains (not
    rank-normalized), per coordinate.

    Args:
        x: draws shaped (chains, draws, *event), a tensor or numpy array of real numbers.

    Returns:
        float64 tensor shaped ``event`` on x's device (0 for constant draws).

    Raises:
        TypeError: x is not a real tensor or numpy array.
        ValueError: x has fewer than 2 dimensions, fewer than 4 draws, or a NaN/inf draw.
    """
    y, event_shape = _as_draws(x)
    return _finish(_mcse_mean(y), event_shape, x)


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """Posterior summary of one coordinate of MCMC draws.

    Attributes:
        name: the coordinate's name.
        mean: mean of all draws.
        sd: standard deviation of all draws (ddof 1).
        q5: 5% quantile of all draws (R's type 7, numpy's default).
        q95: 95% quantile.
        mcse_mean: Monte Carlo standard error of the mean (:func:`mcse_mean`).
        ess_bulk: bulk effective sample size (:func:`ess_bulk`).
        ess_tail: tail effective sample size (:func:`ess_tail`).
        r_hat: rank-normalized split R-hat (:func:`rhat`; NaN for one chain).
    """

    name: str
    mean: float
    sd: float
    q5: float
    q95: float
    mcse_mean: float
    ess_bulk: float
    ess_tail: float
    r_hat: float


def _coordinate_names(event_shape: torch.Size, names: object) -> list[str]:
    count = math.prod(event_shape)
    if names is None:
        if len(event_shape) == 0:
            return ["x"]
        return [
            "x[" + ", ".join(str(i) for i in index) + "]"
            for index in itertools.product(*(range(d) for d in event_shape))
        ]
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"names must be a sequence of {count} strings (one per coordinate) or None; "
            f"got {type(names).__name__}."
        )
    if len(names) != count:
        raise ValueError(
            f"names must hold one name per coordinate: {count} for event shape "
            f"{tuple(event_shape)}; got {len(names)}."
        )
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"names must be strings; got {bad[0]!r} ({type(bad[0]).__name__}).")
    return list(names)


def summary_rows(
    samples: torch.Tensor | np.ndarray, names: Sequence[str] | None = None
) -> list[SummaryRow]:
    """Per-coordinate posterior summary: mean, sd, 5% and 95% quantiles, mcse_mean,
    ess_bulk, ess_tail and r_hat, with the statistics of this module.

    Args:
        samples: draws shaped (chains, draws, *event), a tensor or numpy array.
        names: one name per coordinate in row-major order (``prod(event)`` of them);
            None names them ``x`` for a scalar event and ``x[i]``, ``x[i, j]``... otherwise.

    Returns:
        A list of :class:`SummaryRow`, one per coordinate in row-major order.

    Raises:
        TypeError: samples is not a real tensor or numpy array; names is not a sequence
            of strings.
        ValueError: samples has fewer than 2 dimensions, fewer than 4 draws or a NaN/inf
            draw; names has the wrong length.
    """
    y, event_shape = _as_draws(samples, "samples")
    labels = _coordinate_names(event_shape, names)
    flat = y.reshape(y.shape[0], -1)
    columns = [
        flat.mean(dim=-1),
        torch.std(flat, dim=-1, correction=1),
        _quantile_type7(flat, 0.05),
        _quantile_type7(flat, 0.95),
        _mcse_mean(y),
        _ess_bulk(y),
        _ess_tail(y),
        _rhat_rank(y),
    ]
    table = torch.stack(columns, dim=-1).cpu().tolist()
    return [SummaryRow(label, *values) for label, values in zip(labels, table, strict=True)]


_HEADERS = ("mean", "sd", "5%", "95%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat")


def _format(value: float, column: str) -> str:
    if math.isnan(value):
        return "nan"
    if column in ("ess_bulk", "ess_tail"):
        return f"{value:.0f}"
    if column == "r_hat":
        return f"{value:.3f}"
    return f"{value:.4g}"


def summary_table(samples: torch.Tensor | np.ndarray, names: Sequence[str] | None = None) -> str:
    """The rows of :func:`summary_rows` as a fixed-width text table, one line per
    coordinate under a header line ``mean sd 5% 95% mcse_mean ess_bulk ess_tail r_hat``.

    Args:
        samples: draws shaped (chains, draws, *event), a tensor or numpy array.
        names: as for :func:`summary_rows`.

    Returns:
        The table, lines joined by newlines, without a trailing newline. Means, sds,
        quantiles and mcse have 4 significant digits, ESS is rounded to an integer and
        R-hat has 3 decimals.

    Raises:
        TypeError, ValueError: as :func:`summary_rows`.
    """
    rows = summary_rows(samples, names)
    cells = [
        [row.name]
        + [
            _format(getattr(row, field.name), header)
            for field, header in zip(dataclasses.fields(SummaryRow)[1:], _HEADERS, strict=True)
        ]
        for row in rows
    ]
    header = ["", *_HEADERS]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        )
        for line in [header, *cells]
    ]
    return "\n".join(line.rstrip() for line in lines)
