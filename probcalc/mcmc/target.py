"""What the samplers sample and where they start: the user's log density on the unconstrained
space (see :mod:`probcalc.mcmc.support`), batched over the chains by torch.func.vmap, or
point by point with a warning when vmap cannot run it; and the chains' starts, either given
points or draws of a Laplace fit, whose covariance is then the first metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.evaluation import (
    check_finite_start,
    check_scalar_output,
    without_distribution_validation,
)
from ..laplace.approximation import LaplaceApproximation
from .integrator import CountingPotential, Potential, batched_log_prob, mask_non_finite
from .support import ChangeOfVariables, Constraints, change_of_variables

__all__ = ["Target", "VmapFallbackWarning", "looped_log_prob", "prepare_target"]


class VmapFallbackWarning(UserWarning):
    """torch.func.vmap could not run the log density on a batch of chains, so the samplers
    evaluate it one chain at a time (correct, and slower by about the number of chains)."""


@dataclass(frozen=True)
class Target:
    """The sampler's side of a model.

    Attributes:
        potential: z (chains, d_z) -> (log density (chains,), gradient (chains, d_z)),
            counting its evaluations.
        space: the change of variables x = T(z).
        start: the chains' starting points on z, (chains, d_z).
        inverse_mass: the first inverse mass matrix (chains, d_z) or (chains, d_z, d_z),
            or None for the identity.
    """

    potential: CountingPotential
    space: ChangeOfVariables
    start: torch.Tensor
    inverse_mass: torch.Tensor | None


def looped_log_prob(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Potential:
    """The batched log density and gradient computed one chain at a time by
    torch.autograd, for functions torch.func.vmap cannot run (``.item()``, Python control
    flow on values, in-place updates of captured tensors). The same outputs as
    :func:`probcalc.mcmc.integrator.batched_log_prob`: detached, -inf and a zero gradient
    where either is not finite.
    """

    def potential(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
        gradients = torch.zeros_like(q)
        with without_distribution_validation(), torch.enable_grad():
            for c in range(q.shape[0]):  # vmap failed: one chain per call is all there is
                point = q[c].detach().requires_grad_(True)
                value = log_prob(point)
                values[c] = value.detach()
                if value.requires_grad and bool(torch.isfinite(value.detach())):
                    (gradient,) = torch.autograd.grad(value, point, allow_unused=True)
                    if gradient is not None:
                        gradients[c] = gradient
        return mask_non_finite(values, gradients)

    return potential


def _batched_or_looped(
    log_density: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, compile: bool
) -> Potential:
    """vmap's batched potential when it runs on ``points``; otherwise, when the one-chain
    loop runs, the loop with a VmapFallbackWarning that quotes vmap's error. An error the
    loop raises too is the user's function's own, and is raised; so is the ValueError or
    TypeError that names a log density not returning one number."""
    batched = batched_log_prob(log_density, compile=compile)
    try:
        batched(points)
        return batched
    except (ValueError, TypeError):
        raise
    except Exception as vmap_error:  # any failure under vmap: the loop decides whose it is
        looped = looped_log_prob(log_density)
        looped(points)  # raises the function's own error
        first_line = str(vmap_error).strip().splitlines()[0] if str(vmap_error) else ""
        warnings.warn(
            VmapFallbackWarning(
                f"log_prob cannot be vmapped over the chains ({type(vmap_error).__name__}: "
                f"{first_line[:200]}); evaluating it one chain at a time, about "
                f"{points.shape[0]}x slower. Write it with torch operations only (no .item(), "
                f"no Python if on tensor values) to batch it"
            ),
            stacklevel=5,
        )
        return looped


def _check_start(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    log_density: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    z: torch.Tensor,
    potential: Potential,
) -> None:
    """Refuse starts where the log density is not one finite number with a finite gradient.

    Raises:
        ValueError, TypeError: log_prob does not return a 0-d real tensor.
        NonFiniteError: log_prob or its gradient is not finite at some chain's start.
    """
    values, _ = potential(z)
    for c in range(z.shape[0]):
        if bool(torch.isfinite(values[c])):
            continue
        point = z[c].detach().requires_grad_(True)
        with torch.enable_grad(), without_distribution_validation():
            value = log_density(point)
            if bool(torch.isfinite(value.detach())) and value.requires_grad:
                (gradient,) = torch.autograd.grad(value, point, allow_unused=True)
            else:
                gradient = None
        check_finite_start(
            value,
            what="log_prob",
            where="init" if z.shape[0] == 1 else f"init[{c}]",
            point=x[c],
            gradient=gradient,
            hint="start every chain where the log density is finite",
        )


def _laplace_constraints(fit: LaplaceApproximation) -> list[str] | None:
    """The supports a constrained Laplace fit was made on, per coordinate, in the names
    :func:`change_of_variables` takes (exp for "positive", sigmoid for "unit": the same
    bijections as biject_to's)."""
    if fit.scale != "unconstrained" or fit.transform is None:
        return None
    return [kind or "real" for kind in fit.transform.kinds]


def _laplace_start(
    fit: LaplaceApproximation, chains: int, dense: bool, source: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``chains`` draws of the fit, and its covariance as every chain's first inverse mass
    matrix (its diagonal for a diagonal metric)."""
    draws = fit.sample(chains, seed=source)
    if dense:
        covariance = fit.covariance
        inverse_mass = covariance.expand(chains, *covariance.shape).clone()
    else:
        inverse_mass = fit.marginal_variances().expand(chains, -1).clone()
    return draws, inverse_mass


def prepare_target(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor | LaplaceApproximation,
    spec: Constraints,
    *,
    chains: int,
    dense: bool,
    source: torch.Generator,
    compile: bool = False,
) -> Target:
    """The change of variables, the batched potential and the starts, checked before any
    sampling.

    Args:
        log_prob: the user's log density of one constrained point (d,) -> ().
        init: the starts on the constrained scale, (chains, d) (already checked), or a
            LaplaceApproximation fitted to log_prob: the chains start from its draws (where
            log_prob is finite; elsewhere from its mode) with its covariance as the first
            inverse mass matrix, on the scale it was fitted on. The fit only starts the
            chains: a Gaussian prior it added (``prior_precision``) is not sampled.
        spec: the ``constraints=`` argument.
        chains: the number of chains.
        dense: whether the metric is dense.
        source: the run's generator (the Laplace draws come from it).
        compile: compile the batched potential with torch.compile.

    Returns:
        The Target.

    Raises:
        TypeError, ValueError: bad constraints, a start outside its support, a Laplace fit
            of another dimension or with constraints of its own next to ``constraints=``.
        NonFiniteError: log_prob or its gradient is not finite at a start.
    """
    inverse_mass = None
    if isinstance(init, LaplaceApproximation):
        fitted_on = _laplace_constraints(init)
        if fitted_on is not None and spec is not None:
            raise ValueError(
                "init is a Laplace fit made with constraints of its own: the chains move on "
                "its unconstrained scale with its supports, so pass constraints to "
                "laplace.fit or to the sampler, not to both"
            )
        space = change_of_variables(fitted_on if fitted_on is not None else spec, init.dim)
        if fitted_on is None and not space.is_identity:
            raise ValueError(
                "init is a Laplace fit on the identity scale but constraints= names supports: "
                "fit it with laplace.fit(..., constraints=...) (positive and unit supports) so "
                "that its draws live where the chains move, or start from points"
            )
        z, inverse_mass = _laplace_start(init, chains, dense, source)
        z = z.detach()
        x = space.to_constrained(z)
    else:
        space = change_of_variables(spec, init.shape[-1])
        x = init
        z = space.check_inside(init)
    with without_distribution_validation():
        check_scalar_output(log_prob(x[0]), what="log_prob", where=f"the point {x[0].tolist()}")
    log_density = space.log_density(log_prob)
    batched = _batched_or_looped(log_density, z, compile)
    if isinstance(init, LaplaceApproximation):
        values, _ = batched(z)
        outside = ~torch.isfinite(values)
        if bool(outside.any()):
            mode = init.mode.detach().expand_as(z)
            z = torch.where(outside.unsqueeze(-1), mode, z)
            x = space.to_constrained(z)
    _check_start(log_prob, log_density, x, z, batched)  # not counted: the run counts its own
    return Target(
        potential=CountingPotential(batched), space=space, start=z, inverse_mass=inverse_mass
    )
