"""Result dataclasses shared by every probcalc module.

Results are frozen dataclasses with named fields, never bare tuples. Field names are the
same across the library: ``x`` and ``fun`` for optimizers, ``value``/``error``/``stderr``
for estimates (tensors), ``n_evals`` for evaluation counts, ``converged`` and ``message``
for the outcome.

scipy's names map onto these: ``nfev`` is ``n_evals`` and ``success`` is ``converged``.
``OptimizeResult.nfev``, ``OptimizeResult.success`` and ``Estimate.n`` still read the new
fields for one release, with a DeprecationWarning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .deprecation import deprecated_field

__all__ = ["ConjugateGradientResult", "Estimate", "IntegrationResult", "OptimizeResult"]


@dataclass(frozen=True)
class OptimizeResult:
    """The outcome of :func:`probcalc.minimize`.

    Attributes:
        x: the final iterate, shape ``(d,)``.
        fun: the objective at ``x`` (a 0-d tensor).
        grad: the gradient at ``x``, shape ``(d,)``.
        nit: the number of iterations taken.
        n_evals: the number of evaluations of the objective (line searches included;
            scipy's ``nfev``).
        converged: True when the gradient tolerance ``max_i |grad_i| <= tol`` was met (for
            the stochastic methods "adam" and "sgd" without a tolerance: when the budget ran
            out with a finite objective); scipy's ``success``.
        message: why the method stopped, with the figures that decided it.
        method: the method that produced the result.
    """

    x: torch.Tensor
    fun: torch.Tensor
    grad: torch.Tensor
    nit: int
    n_evals: int
    converged: bool
    message: str
    method: str

    nfev = deprecated_field("nfev", "n_evals")
    success = deprecated_field("success", "converged")


@dataclass(frozen=True)
class ConjugateGradientResult:
    """The outcome of :func:`probcalc.conjugate_gradient` for ``A x = b``.

    Attributes:
        x: the approximate solution, the shape of ``b``.
        residual_norm: ``||b - A x||_2`` as tracked by the recurrence (a Python float).
        nit: the number of iterations (products with ``A``) taken.
        converged: True when ``residual_norm <= max(rtol * ||b||, atol)``.
        negative_curvature: True when a direction ``p`` with ``p'Ap <= 0`` stopped the
            iteration (only with ``stop_on_negative_curvature=True``; otherwise it raises).
        curvature: that direction's Rayleigh quotient ``p'Ap / p'p`` (an upper bound on A's
            smallest eigenvalue); None when no such direction was met.
    """

    x: torch.Tensor
    residual_norm: float
    nit: int
    converged: bool
    negative_curvature: bool = False
    curvature: float | None = None


@dataclass(frozen=True)
class IntegrationResult:
    """The outcome of an integral (probcalc.integrate).

    Attributes:
        value: the integral, a tensor of the integrand's batch shape (0-d for one
            integrand), with its autograd graph: differentiable with respect to parameters
            the integrand closes over and to finite limits. For ``log_integral`` it is the
            log of the integral.
        error: an estimate of ``|value - exact|``, detached, the shape of ``value`` (for
            ``log_integral``: of the error of the log, i.e. the relative error of the integral).
        n_evals: the number of points at which the integrand was evaluated.
        converged: True when ``error <= max(atol, rtol * |value|)`` for every integrand.
        message: how the computation ended, with the figures that decided it.
    """

    value: torch.Tensor
    error: torch.Tensor
    n_evals: int
    converged: bool
    message: str


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate (probcalc.mc).

    Attributes:
        value: the estimate, a tensor of the integrand's batch shape, with its autograd graph.
        stderr: its standard error (detached, same shape): the standard deviation of the
            estimator, estimated from the samples (for QMC: from the blocks of one sequence,
            or from independent scrambles).
        n_evals: the number of evaluations of the integrand.
    """

    value: torch.Tensor
    stderr: torch.Tensor
    n_evals: int

    n = deprecated_field("n", "n_evals")
