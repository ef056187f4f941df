"""Input checks and integrand wrapping shared by quad, cubature and log_integral."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.func import vmap

from ..core.errors import ConvergenceWarning, NonFiniteError
from ..core.results import IntegrationResult

Integrand = Callable[[torch.Tensor], torch.Tensor]


def check_tolerances(rtol: float, atol: float, max_evals: int, dtype: torch.dtype) -> None:
    """ValueError for negative tolerances, both zero, or an rtol below round-off."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    floor = 50 * torch.finfo(dtype).eps
    if atol == 0 and rtol < floor:
        raise ValueError(
            f"rtol = {rtol:g} is below the round-off level 50 eps = {floor:.2g} of {dtype}; "
            f"raise it or give an atol"
        )
    if isinstance(max_evals, bool) or int(max_evals) != max_evals or max_evals < 1:
        raise ValueError(f"max_evals must be a positive integer, got {max_evals!r}")


def resolve_dtype_device(
    *limits: Any, device: torch.device | str | None
) -> tuple[torch.dtype, torch.device]:
    """float64 and the CPU unless a limit is a tensor (its floating dtype and device)."""
    dtype, found_device = torch.float64, None
    for limit in limits:
        if isinstance(limit, torch.Tensor):
            if limit.is_floating_point():
                dtype = limit.dtype
            found_device = limit.device
    if device is not None:
        found_device = torch.device(device)
    return dtype, found_device or torch.device("cpu")


def as_batched(f: Integrand, batched: bool) -> Integrand:
    """``f`` itself when it takes a batch of points; otherwise ``f`` vmapped over dim 0."""
    return f if batched else vmap(f)


def evaluate_checked(
    f: Integrand, points: torch.Tensor, *, log_space: bool = False
) -> tuple[torch.Tensor, torch.Size]:
    """f(points) as an (N, B) tensor, and the batch shape (f's output shape after dim 0).

    Raises:
        ValueError: when the output's leading dimension is not N (a 0-d output included).
        NonFiniteError: at a NaN or infinite value (in log space: NaN or +inf), naming the
            first such point.
    """
    out = f(points)
    n = points.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the integrand must map {n} points to a tensor of shape ({n},) or ({n}, *batch), "
            f"got {shape}; pass batched=False for a function of one point"
        )
    flat = out.reshape(n, -1)
    bad = torch.isnan(flat) | (flat == torch.inf if log_space else torch.isinf(flat))
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        point = points[row].detach()
        where = point.tolist() if point.numel() > 1 else float(point)
        value = flat[row][bad[row]][0]
        raise NonFiniteError(
            f"the integrand is {float(value)} at the node x = {where}", value=float(value),
            where=str(where),
        )  # fmt: skip
    return flat, out.shape[1:]


def finish(
    value: torch.Tensor,
    error: torch.Tensor,
    n_evals: int,
    converged: bool,
    message: str,
    batch_shape: torch.Size,
    name: str,
) -> IntegrationResult:
    """The IntegrationResult, reshaped to the batch shape, warning when not converged."""
    if not converged:
        warnings.warn(ConvergenceWarning(f"{name}: {message}"), stacklevel=3)
    return IntegrationResult(
        value=value.reshape(batch_shape),
        error=error.detach().reshape(batch_shape),
        n_evals=n_evals,
        converged=converged,
        message=message,
    )
