"""expect_normal: E[f(X)] for X ~ N(mean, cov) by Gauss-Hermite rules."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator

import torch

from ..core.errors import NotPositiveDefiniteError
from ..core.options import Option
from ..core.results import IntegrationResult
from ._checks import (
    Integrand,
    as_batched,
    as_limit,
    check_integrand,
    check_tolerances,
    default_rtol,
    evaluate_checked,
    finish,
    resolve_dtype_device,
)
from .rules import gauss_hermite
from .sequence import Rule, refine_rules
from .sparse import product_rule, smolyak

__all__ = ["NormalRule", "expect_normal"]

_PRODUCT_MAX_DIM = 4


class NormalRule(Option):
    """The rules of :func:`expect_normal`."""

    AUTO = "auto"  # product for d <= 4, sparse beyond
    PRODUCT = "product"  # tensor-product Gauss-Hermite, order^d points
    SPARSE = "sparse"  # Smolyak sparse grid on Gauss-Hermite rules


def _rules(d: int, rule: NormalRule, order: int | None) -> Iterator[tuple[str, functools.partial]]:
    product = rule is NormalRule.PRODUCT or (rule is NormalRule.AUTO and d <= _PRODUCT_MAX_DIM)
    if order is not None:
        levels = [max(order - 1, 1), order]
    else:
        levels = list(range(2, 64)) if not product else [3, 5, 8, 12, 18, 27, 40, 60]
    for n in levels:
        if product:
            yield f"Gauss-Hermite order {n}", functools.partial(product_rule, n, d, gauss_hermite)
        else:
            yield f"sparse Gauss-Hermite level {n}", functools.partial(smolyak, n, d, gauss_hermite)


def expect_normal(
    f: Integrand,
    mean: torch.Tensor,
    cov: torch.Tensor,
    *,
    order: int | None = None,
    rule: str | NormalRule = "auto",
    rtol: float | None = None,
    atol: float = 0.0,
    max_evals: int = 1_000_000,
    batched: bool = True,
) -> IntegrationResult:
    """``E[f(X)]`` for ``X ~ N(mean, cov)`` by Gauss-Hermite quadrature.

    With ``L L' = cov``: ``E[f(X)] = π^(-d/2) ∫ exp(-|t|²) f(mean + √2 L t) dt``, by the
    product rule (d <= 4 with ``rule="auto"``) or a Smolyak sparse grid (d > 4).

    Args:
        f: maps points ``(n, d)`` to ``(n,)`` or ``(n, *batch)`` (``batched=False``: one
            point, vmapped).
        mean: shape ``(d,)``; it may require grad: the value is differentiable with respect
            to it. The computation runs in the dtype of mean and cov: float64 (numbers,
            integer tensors) or float32.
        cov: shape ``(d, d)``, symmetric positive definite; it may require grad too.
        order: the points per axis (product) or the level (sparse); the error is the change
            from order - 1. Default: grow the order until the change meets the tolerance.
        rule: "auto", "product" or "sparse".
        rtol: the relative tolerance on that change. The default follows the dtype: 1e-8
            in float64, 1000 eps = 1.2e-4 in float32.
        atol: the absolute tolerance on that change.
        max_evals: the most points.
        batched: whether ``f`` takes a batch of points.

    Returns:
        IntegrationResult(value, error, n_evals, converged, message).

    Raises:
        ValueError: for shapes that do not match or d = 0, a mean or cov that is not
            finite, a cov that is not symmetric, an unknown rule, bad tolerances (negative,
            NaN, below the dtype's round-off), an order that is not a positive integer.
        TypeError: ``f`` not callable, ``batched`` not a bool, mean or cov not real numbers
            or tensors, or complex, float16 or bfloat16; a complex output of f.
        NotPositiveDefiniteError: when cov is not positive definite (with its smallest
            eigenvalue).
        NonFiniteError: when f is NaN or infinite at a node.

    Example:
        >>> import torch, probcalc as pc
        >>> mean = torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
        >>> r = pc.integrate.expect_normal(lambda x: x[:, 0] * x[:, 1], mean, cov)
        >>> round(float(r.value), 10)  # cov_01 + mean_0 mean_1
        -0.5
    """
    check_integrand(f, batched)
    rule = NormalRule.parse(rule, name="rule")
    dtype, _ = resolve_dtype_device(mean, cov, device=None, what="mean and cov")
    device = mean.device if isinstance(mean, torch.Tensor) else torch.device("cpu")
    mean = as_limit(mean, "mean", dtype, device)
    cov = as_limit(cov, "cov", dtype, device)
    if mean.dim() != 1 or mean.numel() == 0 or cov.shape != (mean.numel(), mean.numel()):
        raise ValueError(
            f"mean must have shape (d,) with d >= 1 and cov (d, d), got {tuple(mean.shape)} "
            f"and {tuple(cov.shape)}"
        )
    for name, value in (("mean", mean), ("cov", cov)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite, got {value.detach().tolist()}")
    asymmetry = float((cov - cov.T).detach().abs().max())
    if asymmetry > math.sqrt(torch.finfo(dtype).eps) * float(cov.detach().abs().max()):
        raise ValueError(
            f"cov must be symmetric: max |cov - cov'| = {asymmetry:.3g} (cov = "
            f"{cov.detach().tolist()})"
        )
    rtol = default_rtol(rtol, dtype, 1e-8)
    check_tolerances(rtol, atol, max_evals, dtype)
    if order is not None and (
        isinstance(order, bool)
        or not isinstance(order, numbers.Real)
        or not float(order).is_integer()
        or order < 1
    ):
        raise ValueError(f"order must be a positive integer or None, got {order!r}")
    factor, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        smallest = float(torch.linalg.eigvalsh(cov.detach())[0])
        raise NotPositiveDefiniteError(
            f"cov is not positive definite: smallest eigenvalue {smallest:.6g}",
            min_eigenvalue=smallest,
        )
    d = mean.numel()
    f = as_batched(f, batched)
    batch_shape: list[torch.Size] = []

    def evaluate(points: torch.Tensor) -> torch.Tensor:
        values, shape = evaluate_checked(f, points, rtol=rtol, atol=atol)
        batch_shape[:] = [shape]
        return values

    def mapped() -> Iterator[Rule]:
        # E[f(X)] = π^(-d/2) Σ w_i f(mean + √2 L t_i)
        for label, make in _rules(d, rule, order):
            nodes, weights = make(dtype=dtype, device=mean.device)
            yield (
                label,
                lambda n=nodes, w=weights: (
                    mean + math.sqrt(2.0) * n @ factor.T,
                    w / math.pi ** (d / 2),
                ),
            )

    outcome = refine_rules(evaluate, mapped(), rtol=rtol, atol=atol, max_evals=max_evals)
    return finish(
        outcome.total,
        outcome.error,
        outcome.n_evals,
        outcome.converged,
        outcome.message,
        batch_shape[0],
        "expect_normal",
    )
