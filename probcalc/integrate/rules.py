"""Quadrature rules: Gauss-Legendre, Gauss-Kronrod and Gauss-Hermite nodes and weights.

Nodes and weights are computed once per order in float64 numpy, cached, and handed out
as tensors of the caller's dtype and device.

- Gauss-Legendre of any order by Newton's method on the three-term recurrence from
  Tricomi's asymptotic initial guesses, vectorized over the nodes: O(n²) work in all,
  where numpy's leggauss and torchquad diagonalize a dense matrix (O(n³)).
- Gauss-Kronrod of any order by Laurie's algorithm (1997), which no well-kept Python
  library exposes (scipy hard-codes K15 and K21 inside quad_vec).
- Gauss-Hermite from scipy.special.roots_hermite, which is fast and accurate at any order.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import scipy.special
import torch

from ._checks import check_device

__all__ = ["gauss_hermite", "gauss_kronrod", "gauss_legendre"]


def _as_tensors(
    arrays: tuple[np.ndarray, ...], dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.Tensor, ...]:
    dtype = torch.float64 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
    device = None if device is None else check_device(device)
    return tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in arrays)


def _check_order(n: int, minimum: int = 1) -> int:
    """``n`` as an int; ValueError (TypeError for a non-number) naming it otherwise."""
    if not isinstance(n, numbers.Real):
        raise TypeError(f"the order must be an integer >= {minimum}, got {n!r}")
    if isinstance(n, bool) or not n >= minimum or not float(n).is_integer():
        raise ValueError(f"the order must be an integer >= {minimum}, got {n!r}")
    return int(n)


@functools.lru_cache(maxsize=64)
def _gauss_legendre_numpy(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (ascending) and weights of the n-point Gauss-Legendre rule on [-1, 1]."""
    m = (n + 1) // 2  # nodes in [0, 1): the rest by symmetry
    k = np.arange(1, m + 1)
    theta = np.pi * (4 * k - 1) / (4 * n + 2)
    # Tricomi's approximation to the k-th largest root, error O(n^-4)
    x = (1 - (n - 1) / (8.0 * n**3) - (39 - 28 / np.sin(theta) ** 2) / (384.0 * n**4)) * np.cos(
        theta
    )
    for _ in range(100):
        p, dp = _legendre_and_derivative(n, x)
        step = p / dp
        x = x - step
        if np.max(np.abs(step)) <= 4 * np.finfo(float).eps:
            break
    _, dp = _legendre_and_derivative(n, x)
    w = 2.0 / ((1.0 - x**2) * dp**2)
    if n % 2:  # the middle node is exactly 0
        x[-1] = 0.0
    nodes = np.concatenate([-x, x[::-1][n % 2 :]])
    weights = np.concatenate([w, w[::-1][n % 2 :]])
    return nodes, weights


def _legendre_and_derivative(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P_n(x) and P_n'(x) by the recurrence k P_k = (2k-1) x P_{k-1} - (k-1) P_{k-2}."""
    previous, current = np.ones_like(x), x.copy()
    for k in range(2, n + 1):
        previous, current = current, ((2 * k - 1) * x * current - (k - 1) * previous) / k
    if n == 1:
        previous = np.ones_like(x)
    derivative = n * (x * current - previous) / (x**2 - 1.0)
    return current, derivative


def gauss_legendre(
    n: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The n-point Gauss-Legendre rule on [-1, 1]: ``∫ f ≈ Σ w_i f(x_i)``, exact to degree 2n-1.

    Args:
        n: the number of nodes, a positive integer.
        dtype: a real floating torch.dtype (default float64; the nodes are computed in
            float64 and rounded).
        device: where the tensors go (default the CPU).

    Returns:
        (nodes, weights), each of shape ``(n,)``, nodes ascending.

    Raises:
        ValueError: when ``n`` is not a positive integer, or ``device`` is not one torch
            can use here.
        TypeError: ``n`` not a number, a dtype that is not a real floating torch.dtype, or a
            device that is neither a torch.device nor a string.
    """
    return _as_tensors(_gauss_legendre_numpy(_check_order(n)), dtype, device)


@functools.lru_cache(maxsize=64)
def _gauss_kronrod_numpy(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (ascending), Kronrod weights and Gauss weights (0 at the Kronrod-only nodes) of
    the (2n+1)-point Kronrod extension of the n-point Gauss-Legendre rule on [-1, 1]."""
    a, b = _kronrod_recurrence(n)
    # Golub-Welsch on the Jacobi-Kronrod matrix
    jacobi = np.diag(a) + np.diag(np.sqrt(b[1:]), 1) + np.diag(np.sqrt(b[1:]), -1)
    nodes, vectors = np.linalg.eigh(jacobi)
    kronrod_weights = b[0] * vectors[0, :] ** 2
    nodes = 0.5 * (nodes - nodes[::-1])  # exact symmetry
    kronrod_weights = 0.5 * (kronrod_weights + kronrod_weights[::-1])
    nodes[n] = 0.0
    gauss_nodes, gauss_w = _gauss_legendre_numpy(n)
    gauss_weights = np.zeros(2 * n + 1)
    gauss_weights[1::2] = gauss_w  # Gauss nodes interlace with the Kronrod-only ones
    if np.max(np.abs(nodes[1::2] - gauss_nodes)) > 1e-12:
        raise RuntimeError(f"Kronrod extension of order {n} lost the Gauss nodes")
    return nodes, kronrod_weights, gauss_weights


def _kronrod_recurrence(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Laurie's algorithm: the recurrence coefficients (a_k, b_k), k < 2n+1, of the
    Jacobi-Kronrod matrix for the Legendre weight (D. P. Laurie, Math. Comp. 66, 1997;
    the loop structure follows W. Gautschi's r_kronrod). Indices are 1-based as published."""
    length = 2 * n + 1
    # Legendre recurrence on [-1, 1]: a_k = 0, b_0 = 2 (the mass), b_k = k² / (4k² - 1)
    needed = (3 * n) // 2 + 2
    k = np.arange(needed + 1, dtype=float)
    b0 = np.where(k == 0, 2.0, k**2 / np.maximum(4 * k**2 - 1, 1))
    a = np.zeros(length + 1)  # a[1..length]
    b = np.zeros(length + 1)
    for i in range(0, (3 * n) // 2 + 1):
        a[i + 1] = 0.0
    for i in range(0, math.ceil(3 * n / 2) + 1):
        b[i + 1] = b0[i]
    size = n // 2 + 3
    s = np.zeros(size)  # s[1..]
    t = np.zeros(size)
    t[2] = b[n + 2]
    for m in range(0, n - 1):
        u = 0.0
        for kk in range((m + 1) // 2, -1, -1):
            el = m - kk
            u += (
                (a[kk + n + 2] - a[el + 1]) * t[kk + 2]
                + b[kk + n + 2] * s[kk + 1]
                - b[el + 1] * s[kk + 2]
            )
            s[kk + 2] = u
        s, t = t, s
    for j in range(n // 2, -1, -1):
        s[j + 2] = s[j + 1]
    for m in range(n - 1, 2 * n - 2):
        u = 0.0
        j = 0
        el = 0
        for kk in range(m + 1 - n, (m - 1) // 2 + 1):
            el = m - kk
            j = n - 1 - el
            u += (
                -(a[kk + n + 2] - a[el + 1]) * t[j + 2]
                - b[kk + n + 2] * s[j + 2]
                + b[el + 1] * s[j + 3]
            )
            s[j + 2] = u
        if m % 2 == 0:
            kk = m // 2
            a[kk + n + 2] = a[el + 1] + (s[j + 2] - b[kk + n + 2] * s[j + 3]) / t[j + 3]
        else:
            kk = (m + 1) // 2
            b[kk + n + 2] = s[j + 2] / s[j + 3]
        s, t = t, s
    a[2 * n + 1] = a[n] - b[2 * n + 1] * s[2] / t[2]
    return a[1:], b[1:]


def gauss_kronrod(
    n: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Gauss-Kronrod pair G_n-K_(2n+1) on [-1, 1] (e.g. n = 7: G7-K15, n = 10: G10-K21).

    The Kronrod rule is exact to degree 3n+1 (n even) or 3n+2 (n odd); the difference of
    the two rules estimates the error of the Gauss rule.

    Args:
        n: the number of nodes of the Gauss rule, a positive integer.
        dtype: a real floating torch.dtype (default float64; the nodes are computed in
            float64 and rounded).
        device: where the tensors go (default the CPU).

    Returns:
        (nodes, kronrod_weights, gauss_weights), each of shape ``(2n+1,)``, nodes
        ascending; ``gauss_weights`` is 0 at the n+1 Kronrod-only nodes.

    Raises:
        ValueError: when ``n`` is not a positive integer, or ``device`` is not one torch
            can use here.
        TypeError: ``n`` not a number, a dtype that is not a real floating torch.dtype, or a
            device that is neither a torch.device nor a string.
    """
    return _as_tensors(_gauss_kronrod_numpy(_check_order(n)), dtype, device)


@functools.lru_cache(maxsize=64)
def _gauss_hermite_numpy(n: int) -> tuple[np.ndarray, np.ndarray]:
    return scipy.special.roots_hermite(n)


def gauss_hermite(
    n: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The n-point Gauss-Hermite rule: ``∫ exp(-x²) f(x) dx ≈ Σ w_i f(x_i)``, exact to 2n-1.

    (The physicists' weight; for E[f(Z)], Z ~ N(0, 1), use nodes √2 x_i, weights w_i / √π.)

    Args:
        n: the number of nodes, a positive integer.
        dtype: a real floating torch.dtype (default float64; the nodes are computed in
            float64 and rounded).
        device: where the tensors go (default the CPU).

    Returns:
        (nodes, weights), each of shape ``(n,)``, nodes ascending.

    Raises:
        ValueError: when ``n`` is not a positive integer, or ``device`` is not one torch
            can use here.
        TypeError: ``n`` not a number, a dtype that is not a real floating torch.dtype, or a
            device that is neither a torch.device nor a string.
    """
    return _as_tensors(_gauss_hermite_numpy(_check_order(n)), dtype, device)
