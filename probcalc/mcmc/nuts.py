"""The No-U-Turn Sampler, every chain in one batch: multinomial NUTS (Betancourt 2017) with
the generalized U-turn criterion, built iteratively.

Each iteration doubles every chain's trajectory in a random direction until it makes a
U-turn, diverges or reaches ``max_tree_depth``. A new subtree is built leaf by leaf with
per-chain masks (no recursion): the U-turn checks of its sub-subtrees use checkpoints of
momenta and momentum sums stored at even leaves, as NumPyro's iterative NUTS does. Within a
subtree the proposal is drawn by progressive multinomial sampling; between the old tree and
the new subtree by biased progressive sampling. All chains run the same doubling and leaf
loop; a chain that has stopped is frozen while the others go on. Written here because torch
has no NUTS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ..core.random import Seed
from ..laplace.approximation import LaplaceApproximation
from .integrator import Potential, kinetic_energy, leapfrog_step, sample_momentum
from .integrator import velocity as _velocity
from .result import MCMCResult, check_int
from .support import Constraints
from .warmup import MAX_ENERGY_ERROR, State, Stats, Transition, sample_chains

__all__ = ["nuts"]


def _velocities(p: torch.Tensor, inverse_mass: torch.Tensor) -> torch.Tensor:
    """M^{-1} p for several momenta of every chain: p (chains, k, d); inverse_mass
    (chains, d) or (chains, d, d). Returns (chains, k, d)."""
    if inverse_mass.dim() == 2:
        return inverse_mass.unsqueeze(1) * p
    return (inverse_mass.unsqueeze(1) @ p.unsqueeze(-1)).squeeze(-1)


def _turning(rho: torch.Tensor, v_left: torch.Tensor, v_right: torch.Tensor) -> torch.Tensor:
    """The generalized U-turn criterion from rho and the ends' velocities M^{-1} p (which
    broadcast against rho (..., d)): turning when v_left . rho <= 0 or v_right . rho <= 0
    (as NumPyro). fmin ignores a NaN product as the two comparisons would."""
    left = (v_left * rho).sum(dim=-1)  # not linalg.vecdot: its sums round differently
    right = (v_right * rho).sum(dim=-1)
    return torch.fmin(left, right) <= 0


def _is_turning(
    p_left: torch.Tensor, p_right: torch.Tensor, p_sum: torch.Tensor, inverse_mass: torch.Tensor
) -> torch.Tensor:
    """The generalized U-turn criterion per chain: with rho = p_sum - (p_left + p_right)/2,
    turning when (M^{-1} p_left) . rho <= 0 or (M^{-1} p_right) . rho <= 0 (as NumPyro)."""
    rho = p_sum - 0.5 * (p_left + p_right)
    return _turning(rho, _velocity(p_left, inverse_mass), _velocity(p_right, inverse_mass))


def _turning_at_checkpoints(
    ckpt_p: torch.Tensor,
    ckpt_sum: torch.Tensor,
    p_new: torch.Tensor,
    sub_sum: torch.Tensor,
    inverse_mass: torch.Tensor,
) -> torch.Tensor:
    """Whether any sub-subtree that ends at the new leaf turns, per chain, all checkpoints at
    once: the sub-subtree of checkpoint k runs from the leaf whose momentum is ckpt_p[:, k]
    (stored with the running sum ckpt_sum[:, k] up to it) to the new leaf p_new, so its
    momentum sum is sub_sum - ckpt_sum + ckpt_p.

    Args:
        ckpt_p, ckpt_sum: (chains, k, d), the checkpoints idx_min..idx_max.
        p_new, sub_sum: the new leaf's momentum and the subtree's momentum sum, (chains, d).
        inverse_mass: (chains, d) or (chains, d, d).

    Returns:
        (chains,) bool.
    """
    span = sub_sum.unsqueeze(1) - ckpt_sum + ckpt_p
    rho = span - 0.5 * (ckpt_p + p_new.unsqueeze(1))
    v_new = _velocity(p_new, inverse_mass).unsqueeze(1)
    return _turning(rho, _velocities(ckpt_p, inverse_mass), v_new).any(dim=-1)


@functools.cache
def _checkpoint_range(n: int) -> tuple[int, int]:
    """For leaf n of a subtree (0-based): the checkpoints [idx_min, idx_max] whose
    sub-subtrees end at this leaf. idx_max is the number of set bits of n >> 1, and an odd n
    closes as many sub-subtrees as it has trailing one bits (NumPyro's
    _leaf_idx_to_ckpt_idxs)."""
    idx_max = bin(n >> 1).count("1")
    trailing = 0
    while (n >> trailing) & 1:
        trailing += 1
    return idx_max - trailing + 1, idx_max


def _column(mask: torch.Tensor) -> torch.Tensor:
    """A per-chain mask (chains,) shaped to select trajectory points (chains, 3, d)."""
    return mask.view(-1, 1, 1)


def nuts_transition(potential: Potential, max_tree_depth: int) -> Transition:
    """One multinomial NUTS transition of every chain (see the module's description).

    A trajectory point is (q, p, gradient) stacked as (chains, 3, d), so that one
    torch.where moves all three. Per leaf, only what a chain still building its subtree
    reads is masked by ``active``: a chain's subtree log weight, momentum sum and
    checkpoints are read only while it is active (the U-turn checks, the proposal draw) or
    once it has finished the subtree without stopping, that is while it was active at every
    leaf; a chain that stopped, or had stopped before the subtree, is done after it, and its
    tree ends, weight and momentum sum are never read again. The positions of inactive
    chains are frozen all the same, so that log_prob is only ever evaluated on trajectories
    the sampler builds.
    """

    def transition(
        state: State,
        step_size: torch.Tensor,
        inverse_mass: torch.Tensor,
        mass_factor: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[State, Stats]:
        q0 = state.q
        chains, d = q0.shape
        dtype, device = q0.dtype, q0.device
        p0 = sample_momentum(mass_factor, q0.shape, gen)
        h0 = kinetic_energy(p0, inverse_mass) - state.log_prob

        # starting values, shared: every update below makes a new tensor, none writes in place
        zero = torch.zeros(chains, dtype=dtype, device=device)
        no_chain = torch.zeros(chains, dtype=torch.bool, device=device)
        no_steps = torch.zeros(chains, dtype=torch.long, device=device)
        no_weight = torch.full((chains,), -torch.inf, dtype=dtype, device=device)
        no_momentum = torch.zeros_like(p0)
        back = -step_size

        # the tree: its two ends, its proposal, log weight and momentum sum
        start = torch.stack((q0, p0, state.gradient), dim=1)
        left_end, right_end = start, start
        proposal, prop_lp = start, state.log_prob
        log_w = zero
        p_sum = p0
        done = diverging = no_chain
        depth = n_leaves = no_steps
        sum_accept = zero
        # checkpoints, written in place
        ckpt_p = torch.zeros(chains, max_tree_depth, d, dtype=dtype, device=device)
        ckpt_sum = torch.zeros_like(ckpt_p)

        for j in range(max_tree_depth):
            if bool(done.all()):
                break
            working = ~done
            right = torch.rand(chains, generator=gen, dtype=dtype, device=device) < 0.5
            eps = torch.where(right, step_size, back).unsqueeze(-1)
            half_eps = 0.5 * eps
            point = torch.where(_column(right), right_end, left_end)
            sub_proposal, sub_lp = proposal, prop_lp
            sub_log_w, sub_sum, sub_diverging = no_weight, no_momentum, no_chain
            active = working
            for n in range(2**j):
                if n > 0 and not bool(active.any()):
                    break
                q, p, g = point.unbind(1)
                q_new, p_new, lp_new, g_new = leapfrog_step(
                    potential, q, p, g, eps, half_eps, inverse_mass
                )
                new = torch.stack((q_new, p_new, g_new), dim=1)
                point = torch.where(_column(active), new, point)
                # -Delta H of the leaf, its log weight; a NaN energy is an infinite error
                delta = kinetic_energy(p_new, inverse_mass) - lp_new - h0
                log_weight = -torch.nan_to_num(delta, nan=torch.inf)
                leaf_diverging = log_weight < -MAX_ENERGY_ERROR
                n_leaves = n_leaves + active
                accept = torch.exp(torch.clamp(log_weight, max=0.0))
                sum_accept = sum_accept + torch.where(active, accept, 0.0)
                # progressive multinomial sampling within the subtree (a NaN probability,
                # from two zero weights, never takes)
                new_log_w = torch.logaddexp(sub_log_w, log_weight)
                u = torch.rand(chains, generator=gen, dtype=dtype, device=device)
                take = active & (u < torch.exp(log_weight - new_log_w))
                sub_proposal = torch.where(_column(take), new, sub_proposal)
                sub_lp = torch.where(take, lp_new, sub_lp)
                sub_log_w = new_log_w
                sub_sum = sub_sum + p_new
                idx_min, idx_max = _checkpoint_range(n)
                if n % 2 == 0:
                    ckpt_p[:, idx_max] = p_new
                    ckpt_sum[:, idx_max] = sub_sum
                    stop = leaf_diverging
                else:
                    turning = _turning_at_checkpoints(
                        ckpt_p[:, idx_min : idx_max + 1],
                        ckpt_sum[:, idx_min : idx_max + 1],
                        p_new,
                        sub_sum,
                        inverse_mass,
                    )
                    stop = leaf_diverging | turning
                sub_diverging = sub_diverging | (active & leaf_diverging)
                active = active & ~stop

            # biased progressive sampling between the tree and the new subtree, for the
            # chains whose subtree neither turned nor diverged (still active)
            u = torch.rand(chains, generator=gen, dtype=dtype, device=device)
            take = active & (u < torch.exp(sub_log_w - log_w))
            proposal = torch.where(_column(take), sub_proposal, proposal)
            prop_lp = torch.where(take, sub_lp, prop_lp)
            log_w = torch.logaddexp(log_w, sub_log_w)
            right_end = torch.where(_column(right), point, right_end)
            left_end = torch.where(_column(right), left_end, point)
            p_sum = p_sum + sub_sum
            whole_turning = _is_turning(left_end[:, 1], right_end[:, 1], p_sum, inverse_mass)
            depth = depth + working
            diverging = diverging | sub_diverging
            done = done | ~active | whole_turning

        accept_prob = sum_accept / n_leaves.clamp(min=1).to(dtype)
        stats = Stats(accept_prob, diverging, n_leaves, depth)
        return State(proposal[:, 0], prop_lp, proposal[:, 2]), stats

    return transition


def nuts(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor | LaplaceApproximation,
    *,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    chains: int = 4,
    seed: Seed = None,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    mass_matrix: str = "diag",
    constraints: Constraints = None,
    progress_bar: bool = False,
    compile: bool = False,
) -> MCMCResult:
    """Draw from the density proportional to exp(log_prob) with the No-U-Turn Sampler
    (multinomial, generalized U-turn criterion), all chains as one batch (log_prob is
    vmapped over them). Warmup adapts each chain's step size (dual averaging of the mean
    acceptance statistic to ``target_accept``) and mass matrix (Stan's windows); its draws
    are discarded.

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
        num_samples: draws kept per chain, >= 4.
        num_warmup: warmup iterations per chain, >= 0 (under 20: step size only; 0: step
            size 1 and the identity mass matrix, or the Laplace fit's covariance; from
            a Laplace fit, under 150: its covariance is kept, the step size adapts).
        chains: number of chains, >= 1.
        seed: an int, a torch.Generator or None (fresh entropy).
        target_accept: the mean acceptance statistic warmup aims for, in (0, 1).
        max_tree_depth: the most doublings per transition (at most 2^max_tree_depth - 1
            leapfrog steps), >= 1.
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
        An MCMCResult; samples have shape (chains, num_samples, d); tree_depth and
        num_steps per transition.

    Raises:
        TypeError, ValueError: a bad argument (named in the message), before any work:
            among them a start outside its support.
        NonFiniteError: log_prob or its gradient is not finite at a start.

    Warns:
        ConvergenceWarning: an R-hat above 1.01, a bulk ESS below 100 per chain, or
            divergent transitions, with the figures.
    """
    max_tree_depth = check_int(max_tree_depth, "max_tree_depth", 1)
    return sample_chains(
        log_prob,
        init,
        lambda potential: nuts_transition(potential, max_tree_depth),
        name="nuts",
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
