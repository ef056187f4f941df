"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps, every chain in one batch,
after Stan's windowed warmup of the step size and mass matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.random import Seed
from ..laplace.approximation import LaplaceApproximation
from .integrator import Potential, kinetic_energy, leapfrog_step, sample_momentum
from .result import MCMCResult, check_int
from .support import Constraints
from .warmup import MAX_ENERGY_ERROR, State, Stats, Transition, sample_chains

__all__ = ["hmc"]


def hmc_transition(potential: Potential, num_steps: int) -> Transition:
    """One HMC transition of every chain: fresh momenta p ~ N(0, M), ``num_steps`` leapfrog
    steps, and a Metropolis test with acceptance min(1, exp(-Delta H)). A trajectory whose
    energy error exceeds 1000 at any step (or is not finite) is a divergence and is
    rejected."""

    def transition(
        state: State,
        step_size: torch.Tensor,
        inverse_mass: torch.Tensor,
        mass_factor: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[State, Stats]:
        p = sample_momentum(mass_factor, state.q.shape, gen)
        h0 = -state.log_prob + kinetic_energy(p, inverse_mass)
        q, value, gradient = state.q, state.log_prob, state.gradient
        worst = torch.zeros_like(h0)
        eps = step_size.unsqueeze(-1)
        half_eps = 0.5 * eps
        for _ in range(num_steps):
            q, p, value, gradient = leapfrog_step(
                potential, q, p, gradient, eps, half_eps, inverse_mass
            )
            error = torch.nan_to_num(kinetic_energy(p, inverse_mass) - value - h0, nan=torch.inf)
            worst = torch.maximum(worst, error)
        diverging = worst > MAX_ENERGY_ERROR
        accept_prob = torch.where(diverging, 0.0, torch.exp(-error).clamp(max=1.0))
        u = torch.rand(h0.shape, generator=gen, dtype=h0.dtype, device=h0.device)
        accept = (u < accept_prob) & ~diverging
        keep = accept.unsqueeze(-1)
        new = State(
            torch.where(keep, q, state.q),
            torch.where(accept, value, state.log_prob),
            torch.where(keep, gradient, state.gradient),
        )
        steps = torch.full(h0.shape, num_steps, dtype=torch.long, device=h0.device)
        return new, Stats(accept_prob, diverging, steps)

    return transition


def hmc(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor | LaplaceApproximation,
    *,
    num_steps: int = 10,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    chains: int = 4,
    seed: Seed = None,
    target_accept: float = 0.8,
    mass_matrix: str = "diag",
    constraints: Constraints = None,
    progress_bar: bool = False,
    compile: bool = False,
) -> MCMCResult:
    """Draw from the density proportional to exp(log_prob) by Hamiltonian Monte Carlo with
    ``num_steps`` leapfrog steps per transition, all chains as one batch (log_prob is
    vmapped over them). Warmup adapts each chain's step size (dual averaging to
    ``target_accept``) and mass matrix (Stan's windows); its draws are discarded.

    Args:
        log_prob: the log density, up to a constant, of one point (d,) -> a 0-d tensor,
            written with torch operations (it is vmapped and differentiated by
            torch.func; one that vmap cannot run is evaluated chain by chain, with a
            VmapFallbackWarning).
        init: the start, (d,) for every chain or (chains, d), floating point, on the
            constrained scale; its dtype and device are the draws'. Or a Laplace fit of
            log_prob (:func:`probcalc.laplace.fit`): the chains start from its draws and
            its covariance is the first inverse mass matrix (on the fit's scale, with its
            constraints), so warmup starts near the typical set and the metric.
        num_steps: leapfrog steps per transition, >= 1.
        num_samples: draws kept per chain, >= 4.
        num_warmup: warmup iterations per chain, >= 0 (under 20: step size only; 0: step
            size 1 and the identity mass matrix, or the Laplace fit's covariance; from
            a Laplace fit, under 150: its covariance is kept, the step size adapts).
        chains: number of chains, >= 1.
        seed: an int, a torch.Generator or None (fresh entropy).
        target_accept: the mean acceptance probability warmup aims for, in (0, 1).
        mass_matrix: "diag" or "dense".
        constraints: the support of each coordinate: None (all real), one support for the
            whole vector, or a sequence of blocks, each a support of one coordinate or a
            pair (support, size). A support is a torch.distributions.constraints object
            that biject_to maps onto (positive, unit_interval, interval(a, b),
            greater_than(a), simplex, ...), :data:`probcalc.mcmc.ordered_vector`, or a name
            "real", "positive", "unit", "simplex", "ordered". The chains move on
            unconstrained z with x = biject_to(support)(z) and sample
            log_prob(x) + log|det dx/dz| (as Stan); samples are returned as x.
        progress_bar: show a tqdm progress bar: the phase (warmup, sampling), the mean
            step size and acceptance statistic, and the running count of divergences.
        compile: compile the batched log density and gradient with torch.compile (once
            per run, a few seconds; the first compile on a machine takes longer). It pays
            when log_prob spends its time in Python (torch.distributions, many small
            operations): about 3x on eight schools; a log_prob that cannot be compiled
            runs uncompiled with a CompileFallbackWarning. Compiled and uncompiled runs
            differ in the last bits, so their draws differ.

    Returns:
        An MCMCResult; samples have shape (chains, num_samples, d).

    Raises:
        TypeError, ValueError: a bad argument (named in the message), before any work:
            among them a start outside its support.
        NonFiniteError: log_prob or its gradient is not finite at a start.

    Warns:
        ConvergenceWarning: an R-hat above 1.01, a bulk ESS below 100 per chain, or
            divergent transitions, with the figures.
    """
    num_steps = check_int(num_steps, "num_steps", 1)
    return sample_chains(
        log_prob,
        init,
        lambda potential: hmc_transition(potential, num_steps),
        name="hmc",
        num_samples=num_samples,
        num_warmup=num_warmup,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        constraints=constraints,
        progress_bar=progress_bar,
        compile=compile,
    )
