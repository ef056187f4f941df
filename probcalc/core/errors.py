"""Errors and warnings shared by every probcalc module.

Every error probcalc raises on purpose derives from :class:`ProbcalcError`, so callers can
catch the library's own failures in one place. Each carries the figure that failed
(the non-finite value, the smallest eigenvalue, the last gradient norm) as an attribute
as well as in its message.
"""

from __future__ import annotations

import torch

__all__ = [
    "CheckpointError",
    "ConvergenceError",
    "ConvergenceWarning",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "ProbcalcError",
]


class ProbcalcError(Exception):
    """Base class of the errors probcalc raises on purpose."""


class NonFiniteError(ProbcalcError, ArithmeticError):
    """A user function returned NaN or ±inf where a finite number was needed.

    Attributes:
        value: the offending value (a Python float, or a tensor for batched output).
        where: a description of the input at which it appeared, or None.
    """

    def __init__(self, message: str, *, value: object = None, where: str | None = None) -> None:
        super().__init__(message)
        self.value = value
        self.where = where


class NotPositiveDefiniteError(ProbcalcError, torch.linalg.LinAlgError):
    """A matrix (Hessian, precision, Fisher) that must be positive definite is not.

    Attributes:
        min_eigenvalue: the smallest eigenvalue found, or an upper bound on it
            (a Rayleigh quotient ``p'Ap / p'p`` when only products with the matrix exist).
    """

    def __init__(self, message: str, *, min_eigenvalue: float) -> None:
        super().__init__(message)
        self.min_eigenvalue = min_eigenvalue


class ConvergenceError(ProbcalcError, RuntimeError):
    """An iterative method stopped without meeting its tolerance and cannot go on.

    Attributes:
        figure: the quantity that failed to meet the tolerance (e.g. the gradient norm).
    """

    def __init__(self, message: str, *, figure: float | None = None) -> None:
        super().__init__(message)
        self.figure = figure


class CheckpointError(ProbcalcError, ValueError):
    """A saved agent or checkpoint cannot be read: truncated, corrupted, written by another
    program, or holding another algorithm.

    Attributes:
        path: the file that failed to load.
    """

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class ConvergenceWarning(UserWarning):
    """An iterative method returned a result that did not meet its tolerance."""
