"""Input checks and integrand wrapping shared by quad, cubature and log_integral."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..core.errors import ConvergenceWarning
from ..core.evaluation import evaluate_batch, vmap_points
from ..core.results import IntegrationResult

Integrand = Callable[[torch.Tensor], torch.Tensor]
# Breakpoints of one interval: numbers, or a 1-D tensor; None for none.
Breakpoints = Sequence[float] | torch.Tensor | None


def check_breakpoints(
    points: Sequence[float] | torch.Tensor,
    low: float | torch.Tensor,
    high: float | torch.Tensor,
    what: str,
) -> list[float]:
    """The breakpoints strictly inside (low, high), sorted, without repeats; ValueError for
    points that are not numbers, not finite, or outside [low, high] (low <= high)."""
    low, high = (float(torch.as_tensor(end).detach()) for end in (low, high))
    try:
        values = torch.as_tensor(points, dtype=torch.float64).detach().reshape(-1).tolist()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{what} must be a sequence of numbers, got {points!r}") from None
    if torch.as_tensor(points).dim() > 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got {points!r}")
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value}")
        if not low <= value <= high:
            raise ValueError(f"{what}: {value} lies outside the interval [{low}, {high}]")
    return sorted({value for value in values if low < value < high})


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
    """``f`` itself when it takes a batch of points; otherwise ``f`` vmapped over dim 0 (with
    torch.distributions' validation off during the call, see core.evaluation)."""
    return f if batched else vmap_points(f)


def evaluate_checked(
    f: Integrand, points: torch.Tensor, *, log_space: bool = False
) -> tuple[torch.Tensor, torch.Size]:
    """f(points) as an (N, B) tensor and the batch shape; see
    :func:`probcalc.core.evaluation.evaluate_batch` (in log space -inf is allowed)."""
    return evaluate_batch(
        f, points, what="the integrand", point_name="node", allow_minus_inf=log_space,
        hint="; pass batched=False for a function of one point",
    )  # fmt: skip


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
