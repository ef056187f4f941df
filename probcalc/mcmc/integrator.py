"""The batched Hamiltonian pieces that HMC and NUTS share: the log density and its gradient
for every chain in one call, momenta drawn from N(0, M), the kinetic energy
K(p) = p^T M^{-1} p / 2 and the leapfrog step, each on tensors of shape (chains, d) with
per-chain step sizes (chains,) and a per-chain inverse mass matrix, (chains, d) (diagonal)
or (chains, d, d) (dense).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable

import torch
from torch.func import grad_and_value, vmap

from ..core.derivatives import value_and_grad
from ..core.evaluation import without_distribution_validation

__all__ = [
    "CompileFallbackWarning",
    "CountingPotential",
    "Potential",
    "batched_log_prob",
    "kinetic_energy",
    "leapfrog",
    "leapfrog_step",
    "mask_non_finite",
    "sample_momentum",
    "velocity",
]

# (q of shape (chains, d)) -> (log_prob (chains,), gradient (chains, d))
Potential = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class CompileFallbackWarning(UserWarning):
    """torch.compile could not compile the batched log density and gradient, so the samplers
    run it uncompiled (the same draws' distribution, without the speed-up)."""


def mask_non_finite(
    value: torch.Tensor, gradient: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log density -inf and gradient 0 for every chain (row) where either is not finite."""
    bad = ~(torch.isfinite(value) & torch.isfinite(gradient).all(dim=-1))
    return value.masked_fill(bad, -torch.inf), gradient.masked_fill(bad.unsqueeze(-1), 0.0)


def _mask_non_finite_eagerly(
    value: torch.Tensor, gradient: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mask_non_finite`, which on the CPU first checks whether every number is
    finite (a finite sum; one that overflows takes the exact path): the usual case then
    costs three small operations instead of seven. On an accelerator the check would wait
    for the device, so the mask is applied as it is."""
    if value.device.type == "cpu" and bool(torch.isfinite(value.sum() + gradient.sum())):
        return value, gradient
    return mask_non_finite(value, gradient)


def _gradient_of_sum(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Potential:
    """Every chain's log density by vmap of the forward pass only, and every gradient from
    one reverse pass over their sum: the chains' rows are independent under vmap, so
    d(sum_c f(q_c))/dq_c = grad f(q_c). Cheaper per call than vmap over grad_and_value,
    which batches the backward pass through functorch's wrappers as well.

    Raises:
        ValueError: the log density is not one real number per point (for the caller to
            hand over to ``value_and_grad``, whose message says what to change).
    """
    mapped = vmap(log_prob)

    def potential(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = q.detach().requires_grad_(True)
            value = mapped(x)
            if (
                not isinstance(value, torch.Tensor)
                or value.shape != q.shape[:1]
                or not value.is_floating_point()
            ):
                raise ValueError("log_prob must return one real number per point")
            if not value.requires_grad:  # a constant log density: no graph to go back through
                return value, torch.zeros_like(q)
            (gradient,) = torch.autograd.grad(value.sum(), x, materialize_grads=True)
        return value.detach(), gradient

    return potential


def _compiled(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Potential:
    """The masked log density and gradient (vmap over grad_and_value, then the non-finite
    mask) as one torch.compile'd graph: no Python, torch.distributions or functorch work
    per call once compiled, for shapes, dtypes and devices it has seen."""

    def potential(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gradient, value = vmap(grad_and_value(log_prob))(q)
        return mask_non_finite(value, gradient)

    # Dynamo keeps its compiled graphs, and counts recompilations against
    # torch._dynamo.config.recompile_limit (8), per code object. Every potential built here
    # would share this one, so the ninth model compiled in a process would run uncompiled; a
    # copy of the code object gives each potential its own cache.
    own = types.FunctionType(
        potential.__code__.replace(),
        potential.__globals__,
        potential.__name__,
        potential.__defaults__,
        potential.__closure__,
    )
    # torch.compile's first call in a process switches torch.distributions' validation off
    # for the whole process (torch._dynamo's TorchPatcher); keep the user's setting.
    validating = torch.distributions.Distribution._validate_args
    try:
        return torch.compile(own, fullgraph=True, dynamic=False)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validating)


class _BatchedPotential:
    """``log_prob`` batched over the chains by the fastest of its ways that runs it
    (torch.compile'd when asked; vmap of the forward pass with one backward pass; vmap over
    grad_and_value), falling back to the next way, for good, when one raises and the next
    one does not. An error every way raises is the function's own and is raised from the
    last, ``value_and_grad``, whose messages say what to change."""

    def __init__(self, log_prob: Callable[[torch.Tensor], torch.Tensor], compile: bool) -> None:
        reference = value_and_grad(log_prob, batch=True)

        def masked_reference(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value, gradient = reference(q)
            return _mask_non_finite_eagerly(value.detach(), gradient.detach())

        fast = _gradient_of_sum(log_prob)

        def masked_fast(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _mask_non_finite_eagerly(*fast(q))

        self.ways: list[tuple[str, Potential]] = [
            ("gradient of the sum", masked_fast),
            ("vmap of grad_and_value", masked_reference),
        ]
        if compile:
            self.ways.insert(0, ("compiled", _compiled(log_prob)))

    def __call__(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        failed: list[tuple[str, Exception]] = []
        with without_distribution_validation():
            for name, way in self.ways[:-1]:
                try:
                    out = way(q)
                except Exception as error:  # any failure: a later way decides whose it is
                    failed.append((name, error))
                    continue
                break
            else:
                out = self.ways[-1][1](q)  # raises when the function itself fails
        if failed:
            del self.ways[: len(failed)]
            for name, error in failed:
                if name == "compiled":
                    first_line = str(error).strip().splitlines()[0] if str(error) else ""
                    warnings.warn(
                        CompileFallbackWarning(
                            f"torch.compile cannot compile log_prob ({type(error).__name__}: "
                            f"{first_line[:200]}); running it uncompiled"
                        ),
                        stacklevel=2,
                    )
        return out


def batched_log_prob(
    log_prob: Callable[[torch.Tensor], torch.Tensor], *, compile: bool = False
) -> Potential:
    """``log_prob`` of one point (d,) -> () turned into a function of every chain's point
    (chains, d) that returns the log density (chains,) and its gradient (chains, d), with
    torch.distributions' validation off (it cannot run under vmap).

    The values come from torch.func.vmap of ``log_prob`` and the gradients from one
    backward pass over their sum; where that cannot run, from the core's
    ``value_and_grad(batch=True)`` (vmap over grad_and_value). With ``compile`` the whole
    call is one torch.compile'd graph (compiled on the first call, for each new shape, dtype
    or device), and a ``log_prob`` that cannot be compiled runs uncompiled with a
    CompileFallbackWarning.

    A chain whose log density or gradient is not finite (a NaN, or -inf outside the
    support) gets log density -inf and gradient 0: its energy is then infinite, which the
    samplers count as a divergence and never accept, and the zero gradient keeps NaN out of
    the positions.

    Args:
        log_prob: the user's log density of one point.
        compile: compile the batched function with torch.compile.

    Returns:
        The batched function, whose outputs are detached.
    """
    return _BatchedPotential(log_prob, compile)


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
    return (inverse_mass @ p.unsqueeze(-1)).squeeze(-1)  # a batched matmul: einsum costs 3x


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
    return (mass_factor @ z.unsqueeze(-1)).squeeze(-1)


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
    return leapfrog_step(potential, q, p, gradient, eps, 0.5 * eps, inverse_mass)


def leapfrog_step(
    potential: Potential,
    q: torch.Tensor,
    p: torch.Tensor,
    gradient: torch.Tensor,
    eps: torch.Tensor,
    half_eps: torch.Tensor,
    inverse_mass: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`leapfrog` with the step sizes as columns, eps (chains, 1) and eps/2, made once
    by samplers that take many steps of one size.

    Returns:
        ``(q, p, log_prob, gradient)`` after the step.
    """
    # a multiply and an add rather than torch.addcmul, whose fused rounding would change
    # every trajectory in its last bits
    p = p + half_eps * gradient
    q = q + eps * velocity(p, inverse_mass)
    value, gradient = potential(q)
    p = p + half_eps * gradient
    return q, p, value, gradient
