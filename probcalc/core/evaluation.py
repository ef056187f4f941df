"""Checked evaluation of a user's function over a batch of points.

Integration, Monte Carlo and the estimators built on them call the user's function once per
round on a batch; this is where its output is checked: the leading dimension must be the
number of points, and a NaN or infinity is reported with the point where it appeared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.func import vmap

from .errors import NonFiniteError

__all__ = ["evaluate_batch", "vmap_points", "without_distribution_validation"]


@contextlib.contextmanager
def without_distribution_validation() -> Iterator[None]:
    """Switch torch.distributions' argument validation off, and back as it was on exit.

    Validation tests its constraints with data-dependent Python branches (``.item()``),
    which torch.func.vmap cannot trace; a log density written with torch.distributions would
    otherwise fail under vmap. Out-of-support points still give NaN or -inf, which the
    checked evaluation reports with the point.
    """
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)


def vmap_points(
    f: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function of one point, shape (d,), mapped over a batch (n, d) by torch.func.vmap,
    with torch.distributions' validation off during the call (see above)."""
    mapped = vmap(f)

    def batched(points: torch.Tensor) -> torch.Tensor:
        with without_distribution_validation():
            return mapped(points)

    return batched


def evaluate_batch(
    f: Callable[[torch.Tensor], torch.Tensor],
    points: torch.Tensor,
    *,
    what: str = "f",
    point_name: str = "point",
    allow_minus_inf: bool = False,
    hint: str = "",
) -> tuple[torch.Tensor, torch.Size]:
    """``f(points)`` as an (N, B) tensor, and f's output shape after the first dimension.

    Args:
        f: the user's function of a batch.
        points: shape ``(N, ...)``.
        what, point_name: how messages name the function and a point ("the integrand",
            "node"; "log_target", "sample").
        allow_minus_inf: accept -inf (a log density outside its support).
        hint: appended to the shape error (e.g. how to pass a one-point function).

    Raises:
        ValueError: when the output's leading dimension is not N (a 0-d output included).
        NonFiniteError: at the first NaN or infinite value (+inf only, with
            ``allow_minus_inf``), naming the point.
    """
    out = f(points)
    n = points.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{what} must map {n} points to a tensor of shape ({n},) or ({n}, *batch), "
            f"got {shape}{hint}"
        )
    flat = out.reshape(n, -1)
    bad = torch.isnan(flat) | (flat == torch.inf if allow_minus_inf else torch.isinf(flat))
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        point = points[row].detach()
        where = point.tolist() if point.numel() > 1 else float(point)
        value = float(flat[row][bad[row]][0])
        raise NonFiniteError(
            f"{what} is {value} at the {point_name} x = {where}", value=value, where=str(where)
        )
    return flat, out.shape[1:]
