"""Argument checks of the environments' constructors: a TypeError or ValueError naming the
argument, raised before the environment is built (this package imports nothing of
probcalc, so the checks live here)."""

from __future__ import annotations

import math
import numbers

import numpy as np


def real_number(
    value: object,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a float: a finite real number (not a string or a bool) within bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above}, got {value}")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"{name} must be >= {at_least}, got {value}")
    if at_most is not None and not value <= at_most:
        raise ValueError(f"{name} must be <= {at_most}, got {value}")
    return value


def real_array(value: object, name: str, ndim: int) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions of finite real numbers."""
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got {value!r:.80}")
    array = array.astype(float)
    if array.ndim != ndim or array.size == 0:
        kind = "a vector (d,)" if ndim == 1 else "a matrix"
        raise ValueError(f"{name} must be {kind}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def symmetric(matrix: np.ndarray, name: str, *, definite: bool) -> None:
    """ValueError unless ``matrix`` is symmetric positive semi-definite (definite if asked)."""
    if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric, got {matrix.tolist()}")
    smallest = float(np.linalg.eigvalsh(matrix)[0])
    if smallest < 0 or (definite and smallest <= 0):
        kind = "positive definite" if definite else "positive semi-definite"
        raise ValueError(f"{name} must be {kind}; its smallest eigenvalue is {smallest:.3g}")
