"""The batched Hamiltonian pieces that HMC and NUTS share: the log density and its gradient
for every chain in one call, momenta drawn from N(0, M), the kinetic energy
K(p) = p^T M^{-1} p / 2 and the leapfrog step, each on tensors of shape (chains, d) with
per-chain step sizes (chains,) and a per-chain inverse mass matrix, (chains, d) (diagonal)
or (chains, d, d) (dense).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.derivatives import value_and_grad
from ..core.evaluation import without_distribution_validation

__all__ = [
    "CountingPotential",
    "Potential",
    "batched_log_prob",
    "kinetic_energy",
    "leapfrog",
    "sample_momentum",
    "velocity",
]

# (q of shape (chains, d)) -> (log_prob (chains,), gradient (chains, d))
Potential = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def batched_log_prob(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Potential:
    """``log_prob`` of one point (d,) -> () turned into a function of every chain's point
    (chains, d) that returns the log density (chains,) and its gradient (chains, d), by
    the core's ``value_and_grad(batch=True)`` (vmap over grad_and_value), with
    torch.distributions' validation off (it cannot run under vmap).

    A chain whose log density or gradient is not finite (a NaN, or -inf outside the
    support) gets log density -inf and gradient 0: its energy is then infinite, which the
    samplers count as a divergence and never accept, and the zero gradient keeps NaN out of
    the positions.

    Args:
        log_prob: the user's log density of one point.

    Returns:
        The batched function, whose outputs are detached.
    """
    mapped = value_and_grad(log_prob, batch=True)

    def potential(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with without_distribution_validation():
            value, gradient = mapped(q)
        value = value.detach()
        gradient = gradient.detach()
        bad = ~torch.isfinite(value) | ~torch.isfinite(gradient).all(dim=-1)
        value = torch.where(bad | torch.isnan(value), -torch.inf, value)
        gradient = torch.where(bad.unsqueeze(-1), torch.zeros_like(gradient), gradient)
        return value, gradient

    return potential


class CountingPotential:
    """The batched log density and gradient, counting the points it was evaluated at."""

    def __init__(self, potential: Potential) -> None:
        self.potential = potential
        self.n_evals = 0

    def __call__(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log_prob (chains,) and gradient (chains, d) at q (chains, d)."""
        self.n_evals += q.shape[0]
        return self.potential(q)


def velocity(p: torch.Tensor, inverse_mass: torch.Tensor) -> torch.Tensor:
    """M^{-1} p for every chain: p (chains, d); inverse_mass (chains, d) or (chains, d, d).

    Returns:
        Shape (chains, d).
    """
    if inverse_mass.dim() == p.dim():
        return inverse_mass * p
    return torch.einsum("cij,cj->ci", inverse_mass, p)


def kinetic_energy(p: torch.Tensor, inverse_mass: torch.Tensor) -> torch.Tensor:
    """K(p) = p^T M^{-1} p / 2 for every chain, shape (chains,)."""
    return 0.5 * (p * velocity(p, inverse_mass)).sum(dim=-1)


def sample_momentum(
    mass_factor: torch.Tensor, shape: torch.Size, generator: torch.Generator
) -> torch.Tensor:
    """p ~ N(0, M) for every chain: p = L z with z standard normal and L L^T = M.

    Args:
        mass_factor: L, (chains, d) (diagonal: sqrt of the mass) or (chains, d, d)
            (the Cholesky factor of M).
        shape: (chains, d).
        generator: the draws' generator.

    Returns:
        Shape (chains, d).
    """
    z = torch.randn(shape, generator=generator, dtype=mass_factor.dtype, device=mass_factor.device)
    if mass_factor.dim() == 2:
        return mass_factor * z
    return torch.einsum("cij,cj->ci", mass_factor, z)


def leapfrog(
    potential: Potential,
    q: torch.Tensor,
    p: torch.Tensor,
    gradient: torch.Tensor,
    step_size: torch.Tensor,
    inverse_mass: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One leapfrog (velocity Verlet) step of every chain for H(q, p) = -log_prob(q) + K(p):
    p += eps/2 grad; q += eps M^{-1} p; p += eps/2 grad(q'). A negative step size runs the
    dynamics backwards in time.

    Args:
        potential: the batched log density and gradient.
        q, p, gradient: positions, momenta and the gradient at q, (chains, d).
        step_size: (chains,).
        inverse_mass: (chains, d) or (chains, d, d).

    Returns:
        ``(q, p, log_prob, gradient)`` after the step.
    """
    eps = step_size.unsqueeze(-1)
    p = p + 0.5 * eps * gradient
    q = q + eps * velocity(p, inverse_mass)
    value, gradient = potential(q)
    p = p + 0.5 * eps * gradient
    return q, p, value, gradient
