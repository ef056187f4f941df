"""Input checks and integrand wrapping shared by quad, cubature and log_integral."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..core.errors import ConvergenceWarning
from ..core.evaluation import check_callable, evaluate_batch, vmap_points
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


# The error estimates never go below the round-off floor 50 eps Σ|w f| (QUADPACK's; see
# adaptive.py), about 50 eps ∫|f|, so a relative tolerance is attainable only above
# 50 eps ∫|f| / |∫f|. The default where that floor matters (float32; float64's defaults lie
# far above it) is 1000 eps, 1.2e-4 in float32: 20 times the floor, which leaves room for
# integrals that cancel down to 1/20 of ∫|f| (at 100 eps, an oscillatory integral with
# |∫f| = ∫|f| / 2 could not converge). Converged float32 results are typically within a
# few eps of the exact value.
_DEFAULT_RTOL_EPS = 1000


def default_rtol(rtol: float | None, dtype: torch.dtype, float64_default: float) -> float:
    """``rtol`` itself when given; else ``float64_default`` or 1000 eps of ``dtype``,
    whichever is larger (the float64 default in float64, 1.2e-4 in float32)."""
    if rtol is not None:
        return rtol
    return max(float64_default, _DEFAULT_RTOL_EPS * torch.finfo(dtype).eps)


def check_tolerances(rtol: float, atol: float, max_evals: int, dtype: torch.dtype) -> None:
    """ValueError for negative or NaN tolerances, both zero, or an rtol below round-off;
    TypeError for tolerances that are not numbers."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {name}={value}")
    eps = torch.finfo(dtype).eps
    floor = 50 * eps
    if atol == 0 and rtol < floor:
        raise ValueError(
            f"rtol = {rtol:g} is below the round-off level 50 eps = {floor:.2g} of {dtype} "
            f"(eps = {eps:.3g}): no error estimate in {dtype} can meet it; raise rtol (the "
            f"default follows the dtype), give an atol, or compute in float64"
        )
    if isinstance(max_evals, bool) or not isinstance(max_evals, numbers.Real):
        raise TypeError(f"max_evals must be a positive integer, got {max_evals!r}")
    if not max_evals >= 1 or not float(max_evals).is_integer():
        raise ValueError(f"max_evals must be a positive integer, got {max_evals!r}")


def check_flag(value: object, name: str) -> None:
    """TypeError unless ``value`` is a bool (a string such as "no" would count as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_integrand(f: object, batched: object) -> None:
    """TypeError for an integrand that is not callable or a ``batched`` that is not a bool."""
    check_callable(f, "the integrand")
    check_flag(batched, "batched")


def as_limit(value: Any, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``value`` (a number, a sequence of numbers or a tensor) as a tensor of dtype and
    device; TypeError naming ``name`` for anything else."""
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a real number, a sequence of numbers or a tensor, got {value!r}"
        ) from None


_DTYPES = (torch.float32, torch.float64)


def check_dtype(dtype: torch.dtype, what: str) -> None:
    """TypeError for a floating dtype the rules do not compute in (float16 and bfloat16:
    the nodes' spacing near an end is below their resolution; complex: no ordering)."""
    if dtype not in _DTYPES:
        raise TypeError(
            f"{what} have dtype {dtype}; probcalc.integrate computes in float32 or float64 "
            f"(convert with .to(torch.float64) or .float(); for a complex integrand, integrate "
            f"its real and imaginary parts as a batch of two)"
        )


def resolve_dtype_device(
    *limits: Any, device: torch.device | str | None, what: str = "the limits"
) -> tuple[torch.dtype, torch.device]:
    """float64 and the CPU unless a limit is a tensor: then the promoted floating dtype of
    the tensors (integer and bool tensors count as float64) and the last one's device.

    Raises:
        TypeError: for complex, float16 or bfloat16 limits, or a device that is neither a
            torch.device nor a string.
        ValueError: for a device torch does not know or this machine does not have.
    """
    dtype, found_device = None, None
    for limit in limits:
        if isinstance(limit, torch.Tensor):
            if limit.is_complex() or limit.is_floating_point():
                dtype = limit.dtype if dtype is None else torch.promote_types(dtype, limit.dtype)
            found_device = limit.device
    dtype = torch.float64 if dtype is None else dtype
    check_dtype(dtype, what)
    if device is not None:
        found_device = check_device(device)
    return dtype, found_device or torch.device("cpu")


def check_device(device: object) -> torch.device:
    """``device`` as a torch.device, checked to be one torch can allocate on here.

    Args:
        device: a torch.device or a device string ("cpu", "cuda:0").

    Returns:
        The torch.device.

    Raises:
        TypeError: ``device`` is neither a torch.device nor a string.
        ValueError: a string torch does not know, or a device this machine does not have.
    """
    if not isinstance(device, torch.device | str):
        raise TypeError(
            f"device must be a torch.device or a device string such as 'cpu' or 'cuda:0', "
            f"got {type(device).__name__} {device!r}"
        )
    try:
        parsed = torch.device(device)
        torch.empty(0, device=parsed)  # an unknown or absent device fails here, not later
    except (RuntimeError, AssertionError) as error:  # what torch raises for either
        raise ValueError(
            f"device {device!r} cannot be used: {str(error).splitlines()[0][:120]}; give 'cpu' "
            f"or an available accelerator such as 'cuda:0'"
        ) from None
    return parsed


def as_batched(f: Integrand, batched: bool) -> Integrand:
    """``f`` itself when it takes a batch of points; otherwise ``f`` vmapped over dim 0 (with
    torch.distributions' validation off during the call, see core.evaluation)."""
    return f if batched else vmap_points(f)


def evaluate_checked(
    f: Integrand,
    points: torch.Tensor,
    *,
    log_space: bool = False,
    rtol: float | None = None,
    atol: float = 0.0,
) -> tuple[torch.Tensor, torch.Size]:
    """f(points) as an (N, B) tensor and the batch shape; see
    :func:`probcalc.core.evaluation.evaluate_batch` (in log space -inf is allowed).

    With ``rtol``: ValueError when f returns values of a coarser dtype than the nodes'
    (float32 values at float64 nodes) whose round-off the tolerance is below."""
    values, shape = evaluate_batch(
        f,
        points,
        what="the integrand",
        point_name="node",
        allow_minus_inf=log_space,
        hint="; pass batched=False for a function of one point",
    )
    if rtol is not None and values.is_floating_point() and atol == 0:
        eps = torch.finfo(values.dtype).eps
        if eps > torch.finfo(points.dtype).eps and rtol < 50 * eps:
            raise ValueError(
                f"the integrand returns {values.dtype} values at {points.dtype} nodes: rtol = "
                f"{rtol:g} is below their round-off level 50 eps = {50 * eps:.2g} (eps = "
                f"{eps:.3g}); give limits of dtype {values.dtype} (the default rtol then "
                f"follows it), an rtol of at least {50 * eps:.2g} or an atol, or compute the "
                f"integrand in {points.dtype}"
            )
    return values, shape


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
