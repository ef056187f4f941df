"""An :class:`MCMCResult` as an ArviZ ``InferenceData``, for ArviZ's summaries and plots.

ArviZ is optional: it is imported when :func:`to_inference_data` is called
(``pip install arviz`` or ``probcalc[arviz]``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .result import MCMCResult

if TYPE_CHECKING:
    import arviz
    import xarray

__all__ = ["to_inference_data"]

# the coordinate names xarray gives the draws' own dimensions
_RESERVED = ("chain", "draw")


def check_result(result: object, where: str) -> MCMCResult:
    """``result`` if it is an :class:`MCMCResult`, else a TypeError naming ``where``."""
    if not isinstance(result, MCMCResult):
        raise TypeError(
            f"{where} takes the MCMCResult that probcalc.mcmc.nuts or hmc returns; got "
            f"{type(result).__name__}"
        )
    return result


def check_names(names: object, d: int) -> list[str] | None:
    """``names`` as a list of ``d`` distinct non-empty strings, or None.

    Raises:
        TypeError: names is not a sequence of strings.
        ValueError: names has not ``d`` entries, repeats one, holds an empty string or
            one of the reserved dimension names ``chain``, ``draw``.
    """
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"names must be a list of {d} strings (one per coordinate) or None; got "
            f"{type(names).__name__} {names!r}"
        )
    if len(names) != d:
        raise ValueError(
            f"names must hold one name per coordinate (d = {d}); got {len(names)}: {list(names)!r}"
        )
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"names must be strings; got {name!r} ({type(name).__name__})")
        if not name:
            raise ValueError(f"names must be non-empty strings; got {list(names)!r}")
        if name in _RESERVED:
            raise ValueError(
                f"names must not be {_RESERVED[0]!r} or {_RESERVED[1]!r} (ArviZ's dimensions "
                f"of the draws); got {name!r}"
            )
    seen: set[str] = set()
    repeated = [name for name in names if name in seen or seen.add(name)]
    if repeated:
        raise ValueError(f"names must be distinct; {repeated[0]!r} appears more than once")
    return list(names)


def _numpy(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """A detached copy on the CPU, converted to ``dtype``, as a numpy array."""
    return tensor.detach().to(device="cpu", dtype=dtype).numpy().copy()


def to_inference_data(
    result: MCMCResult, names: Sequence[str] | None = None
) -> arviz.InferenceData | xarray.DataTree:
    """The draws and sampler statistics of ``result`` as ArviZ data: an ``InferenceData``
    with ArviZ 0.x, an ``xarray.DataTree`` with the same groups with ArviZ 1.x.

    Groups, every variable shaped (chain, draw) first:

    - ``posterior``: with ``names`` None, one variable ``x`` of shape
      (chain, draw, x_dim_0) with coordinates ``x_dim_0`` = 0..d-1; with ``names``, one
      variable per coordinate, of shape (chain, draw).
    - ``sample_stats``, with ArviZ's standard names: ``lp`` (the result's ``log_prob`` at
      each draw), ``diverging`` (bool), ``acceptance_rate`` (the acceptance
      statistic), ``n_steps`` (leapfrog steps), ``tree_depth`` (NUTS only) and
      ``step_size`` (each chain's step size after warmup, repeated over its draws).

    Values are float64 numpy arrays on the CPU (int64 for ``n_steps``, ``tree_depth``), so
    that ``arviz.summary`` reproduces :meth:`MCMCResult.summary`. ``n_grad_evals`` is an
    attribute of ``sample_stats``; the inverse mass matrix is not exported.

    Args:
        result: what :func:`probcalc.mcmc.nuts` or :func:`probcalc.mcmc.hmc` returned.
        names: one name per coordinate (d distinct non-empty strings, not ``chain`` or
            ``draw``), or None for the single variable ``x``.

    Returns:
        The groups ``posterior`` and ``sample_stats``, as an ``arviz.InferenceData`` (ArviZ
        0.x) or an ``xarray.DataTree`` (ArviZ 1.x).

    Raises:
        ImportError: ArviZ is not installed.
        TypeError: result is not an MCMCResult; names is not a sequence of strings.
        ValueError: names has not d entries, repeats a name, or holds an empty or reserved
            name.
    """
    check_result(result, "to_inference_data")
    d = result.samples.shape[-1]
    names = check_names(names, d)
    try:
        az = importlib.import_module("arviz")
    except ImportError:
        raise ImportError(
            "to_inference_data needs ArviZ: pip install arviz (or probcalc[arviz])"
        ) from None

    samples = _numpy(result.samples, torch.float64)
    if names is None:
        posterior = {"x": samples}
    else:
        posterior = {name: samples[..., i] for i, name in enumerate(names)}
    draws = samples.shape[1]
    sample_stats = {
        "lp": _numpy(result.log_prob, torch.float64),
        "diverging": _numpy(result.divergences, torch.bool),
        "acceptance_rate": _numpy(result.accept_prob, torch.float64),
        "n_steps": _numpy(result.num_steps, torch.int64),
        "step_size": np.repeat(_numpy(result.step_size, torch.float64)[:, None], draws, axis=1),
    }
    if result.tree_depth is not None:
        sample_stats["tree_depth"] = _numpy(result.tree_depth, torch.int64)
    from .. import __version__

    library = {"inference_library": "probcalc", "inference_library_version": __version__}
    stats_attrs = {**library, "n_grad_evals": int(result.n_grad_evals)}
    dims = {"x": ["x_dim_0"]} if names is None else None
    if int(az.__version__.split(".")[0]) >= 1:
        # ArviZ 1.x: from_dict takes {group: {variable: array}} and returns a DataTree
        return az.from_dict(
            {"posterior": posterior, "sample_stats": sample_stats},
            dims=dims,
            attrs={"posterior": library, "sample_stats": stats_attrs},
        )
    return az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats,
        dims=dims,
        posterior_attrs=library,
        sample_stats_attrs=stats_attrs,
    )
