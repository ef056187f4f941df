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

__all__ = [
    "check_callable",
    "check_finite_start",
    "check_scalar_output",
    "describe_point",
    "evaluate_batch",
    "is_support_error",
    "vmap_points",
    "without_distribution_validation",
]

# The messages torch.distributions' argument validation starts its ValueErrors with: a
# parameter outside its constraint, or a value outside the support.
_VALIDATION_MESSAGES = ("Expected parameter", "Expected value argument")


def check_callable(f: object, name: str) -> None:
    """Refuse an ``f`` that is not callable.

    Args:
        f: the user's function.
        name: how the message names it ("f", "the integrand", "callback").

    Raises:
        TypeError: ``f`` is not callable (the message names ``name`` and the value).
    """
    if not callable(f):
        raise TypeError(f"{name} must be a function, got {type(f).__name__} {f!r:.80}")


def check_scalar_output(value: object, *, what: str, where: str) -> torch.Tensor:
    """``value`` when it is a 0-d real tensor: the one number a log density, log joint or
    objective returns for one point.

    Args:
        value: what the function returned.
        what: how messages name the function ("log_joint").
        where: the point, as messages show it.

    Returns:
        ``value``.

    Raises:
        ValueError: a tensor of another shape (a vector of per-observation terms, say),
            naming the shape received and the () expected.
        TypeError: not a tensor (a Python float cannot carry a gradient), or complex.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{what} must return a 0-d tensor, got {type(value).__name__} at {where}; build "
            f"it from torch operations on its argument"
        )
    if value.dim() != 0:
        raise ValueError(
            f"{what} must return one number per point, a tensor of shape (), got shape "
            f"{tuple(value.shape)} at {where}; sum the terms (e.g. log_prob(y).sum())"
        )
    if value.is_complex():
        raise TypeError(f"{what} must return a real number, got {value.dtype} at {where}")
    return value


def describe_point(x: torch.Tensor) -> str:
    """``x``'s values for a message: all of them up to 6, else its size and the first 3.

    Args:
        x: a point, any shape (flattened).

    Returns:
        The values as text.
    """
    values = x.detach().reshape(-1)
    if values.numel() <= 6:
        return str(values.tolist())
    return f"(d = {values.numel()}, first {values[:3].tolist()} ...)"


def check_finite_start(
    value: torch.Tensor,
    *,
    what: str,
    where: str,
    point: torch.Tensor,
    gradient: torch.Tensor | None = None,
    hint: str = "start where it is finite",
) -> None:
    """Raise unless a method can start at ``point``: the user's function (and its gradient,
    when given) must be finite there. One check for every method that starts from a
    user's point (an optimizer's x0, a Laplace fit's or an evidence's theta0).

    Args:
        value: the function at the start point, a 0-d tensor.
        what: how messages name the function ("log_joint", "the objective").
        where: the argument that holds the start point ("theta0", "x0"); the error's
            ``where``.
        point: the start point as the caller gave it, shown in the message.
        gradient: the gradient there, checked entry by entry when given.
        hint: what to do, appended to the message about the value.

    Raises:
        NonFiniteError: the value is NaN or ±inf (``value`` holds it), or an entry of the
            gradient is (``value`` holds that entry); the message names the point.
    """
    value = value.detach()
    if not bool(torch.isfinite(value)):
        raise NonFiniteError(
            f"{what} is {float(value)} at {where} = {describe_point(point)}; {hint}",
            value=float(value),
            where=where,
        )
    if gradient is not None and not bool(torch.isfinite(gradient.detach()).all()):
        flat = gradient.detach().reshape(-1)
        bad = int((~torch.isfinite(flat)).nonzero()[0])
        entry = float(flat[bad])
        raise NonFiniteError(
            f"the gradient of {what} at {where} is not finite: grad[{bad}] = {entry} at "
            f"{where} = {describe_point(point)}",
            value=entry,
            where=where,
        )


def is_support_error(error: BaseException) -> bool:
    """Whether ``error`` is the ValueError that torch.distributions' argument validation
    raises at a point outside a distribution's domain: a parameter that breaks its
    constraint (a negative scale) or a value outside the support (log_prob of a negative
    number under a Gamma). There the log density is -inf; optimizers treat the point as
    they treat an infinite value (a rejected step).

    Args:
        error: the exception caught.

    Returns:
        True for torch.distributions' validation error.
    """
    if not isinstance(error, ValueError) or not str(error).startswith(_VALIDATION_MESSAGES):
        return False
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    module = "" if frame is None else frame.tb_frame.f_globals.get("__name__", "")
    return module.startswith("torch.distributions")


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
    f: Callable[[torch.Tensor], torch.Tensor], *, scalar: str | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function of one point, shape (d,), mapped over a batch (n, d) by torch.func.vmap,
    with torch.distributions' validation off during the call (see above).

    With ``scalar`` (how messages name ``f``, e.g. "log_joint") each point must give one
    number: the first call raises ValueError when ``f`` returns another shape per point
    (see :func:`check_scalar_output`) instead of passing a batch of vectors on.

    Args:
        f: a function of one point.
        scalar: how messages name ``f`` when it must return one number a point; None to
            accept any output shape.

    Returns:
        The batched function.
    """
    mapped = vmap(f)

    def batched(points: torch.Tensor) -> torch.Tensor:
        with without_distribution_validation():
            out = mapped(points)
        if scalar is not None and isinstance(out, torch.Tensor) and out.dim() != 1:
            first = out[0] if out.dim() else out
            where = f"the point {points[0].detach().tolist()}"
            check_scalar_output(first, what=scalar, where=where)
        return out

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
        what: how messages name the function ("the integrand", "log_target").
        point_name: how messages name a point ("node", "sample").
        allow_minus_inf: accept -inf (a log density outside its support).
        hint: appended to the shape error (e.g. how to pass a one-point function).

    Returns:
        ``(values, shape)``: the values as ``(N, B)`` and f's output shape after its first
        dimension.

    Raises:
        ValueError: when the output's leading dimension is not N (a 0-d output included).
        TypeError: when the output is complex.
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
    if out.is_complex():
        raise TypeError(f"{what} must return real values, got {out.dtype}")
    flat = out.reshape(n, -1)
    bad = torch.isnan(flat) | (flat == torch.inf if allow_minus_inf else torch.isinf(flat))
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        point = points[row].detach()
        where = point.tolist() if point.numel() > 1 else float(point)
        value = float(flat[row][bad[row]][0].detach())
        raise NonFiniteError(
            f"{what} is {value} at the {point_name} x = {where}", value=value, where=str(where)
        )
    return flat, out.shape[1:]
