"""Multi-dimensional rules from 1-D ones: tensor products, and Smolyak sparse grids by the
combination technique."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterator

import torch

from ..core.evaluation import check_callable

__all__ = ["product_rule", "smolyak"]

# A 1-D rule: (n, dtype=, device=) -> (nodes (n,), weights (n,))
Rule1D = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def product_rule(
    n: int, d: int, rule: Rule1D, *, dtype: torch.dtype, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensor product of the n-point 1-D rule over d axes: (nodes (n^d, d), weights)."""
    check_callable(rule, "rule")
    nodes, weights = rule(n, dtype=dtype, device=device)
    grid = torch.cartesian_prod(*([nodes] * d)).reshape(-1, d)
    return grid, torch.cartesian_prod(*([weights] * d)).reshape(-1, d).prod(dim=1)


def smolyak(
    level: int, d: int, rule: Rule1D, *, dtype: torch.dtype, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Smolyak rule A(q, d), q = d + level - 1, from the 1-D rules U^i of 2i - 1 points:

        A(q, d) = Σ_{q-d+1 <= |i| <= q} (-1)^(q-|i|) C(d-1, q-|i|) U^(i_1) ⊗ ... ⊗ U^(i_d).

    Exact for polynomials of total degree 2·level - 1 when the 1-D rules are Gaussian.
    Equal nodes (odd rules share their centre) are merged and their weights added; weights
    can be negative.

    Args:
        level: the level, a positive integer (level 1 is the one-point rule).
        d: the dimension, a positive integer.
        rule: a 1-D rule ``(n, dtype=, device=) -> (nodes (n,), weights (n,))`` such as
            :func:`gauss_legendre` or :func:`gauss_hermite`.
        dtype: the dtype of the nodes and weights, passed to ``rule``.
        device: where they go, passed to ``rule``.

    Returns:
        (nodes (N, d), weights (N,)).

    Raises:
        ValueError: when ``level`` or ``d`` is not a positive integer.
        TypeError: ``rule`` not callable.
    """
    check_callable(rule, "rule")
    for name, value in (("level", level), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    q = d + level - 1
    nodes_all, weights_all = [], []
    for total in range(max(d, q - d + 1), q + 1):
        coefficient = (-1) ** (q - total) * math.comb(d - 1, q - total)
        for index in _compositions(total, d):
            rules = [rule(2 * i - 1, dtype=dtype, device=device) for i in index]
            nodes_all.append(torch.cartesian_prod(*[r[0] for r in rules]).reshape(-1, d))
            weights = torch.cartesian_prod(*[r[1] for r in rules]).reshape(-1, d).prod(dim=1)
            weights_all.append(coefficient * weights)
    nodes = torch.cat(nodes_all)
    unique, inverse = torch.unique(nodes, dim=0, return_inverse=True)
    merged = torch.zeros(len(unique), dtype=dtype, device=device)
    return unique, merged.index_add_(0, inverse, torch.cat(weights_all))


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All tuples of ``parts`` positive integers summing to ``total``."""
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cuts, total)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(parts))
