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

from collections.abc import Callable

import torch

from ..core.random import Seed
from .integrator import Potential, kinetic_energy, leapfrog, sample_momentum
from .integrator import velocity as _velocity
from .result import MCMCResult, check_int
from .warmup import MAX_ENERGY_ERROR, State, Stats, Transition, sample_chains

__all__ = ["nuts"]


def _is_turning(
    p_left: torch.Tensor, p_right: torch.Tensor, p_sum: torch.Tensor, inverse_mass: torch.Tensor
) -> torch.Tensor:
    """The generalized U-turn criterion per chain: with rho = p_sum - (p_left + p_right)/2,
    turning when (M^{-1} p_left) . rho <= 0 or (M^{-1} p_right) . rho <= 0 (as NumPyro)."""
    rho = p_sum - 0.5 * (p_left + p_right)
    left = (_velocity(p_left, inverse_mass) * rho).sum(dim=-1)
    right = (_velocity(p_right, inverse_mass) * rho).sum(dim=-1)
    return (left <= 0) | (right <= 0)


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


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` for the chains in ``mask`` (chains,), ``old`` for the others."""
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


def nuts_transition(potential: Potential, max_tree_depth: int) -> Transition:
    """One multinomial NUTS transition of every chain (see the module's description)."""

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
        h0 = -state.log_prob + kinetic_energy(p0, inverse_mass)

        # the tree: its two ends, its proposal, log weight and momentum sum
        q_left, p_left, g_left = q0, p0, state.gradient
        q_right, p_right, g_right = q0, p0, state.gradient
        prop_q, prop_lp, prop_g = q0, state.log_prob, state.gradient
        log_w = torch.zeros(chains, dtype=dtype, device=device)
        p_sum = p0
        done = torch.zeros(chains, dtype=torch.bool, device=device)
        diverging = torch.zeros_like(done)
        depth = torch.zeros(chains, dtype=torch.long, device=device)
        n_leaves = torch.zeros(chains, dtype=torch.long, device=device)
        sum_accept = torch.zeros(chains, dtype=dtype, device=device)
        ckpt_p = torch.zeros(chains, max_tree_depth, d, dtype=dtype, device=device)
        ckpt_sum = torch.zeros_like(ckpt_p)

        for j in range(max_tree_depth):
            if bool(done.all()):
                break
            working = ~done
            right = torch.rand(chains, generator=gen, dtype=dtype, device=device) < 0.5
            eps = torch.where(right, step_size, -step_size)
            q = _where(right, q_right, q_left)
            p = _where(right, p_right, p_left)
            g = _where(right, g_right, g_left)
            sub_q, sub_lp, sub_g = prop_q, prop_lp, prop_g
            sub_log_w = torch.full((chains,), -torch.inf, dtype=dtype, device=device)
            sub_sum = torch.zeros_like(p)
            sub_turning = torch.zeros_like(done)
            sub_diverging = torch.zeros_like(done)
            active = working.clone()
            for n in range(2**j):
                if not bool(active.any()):
                    break
                q_new, p_new, lp_new, g_new = leapfrog(potential, q, p, g, eps, inverse_mass)
                q = _where(active, q_new, q)
                p = _where(active, p_new, p)
                g = _where(active, g_new, g)
                delta = -lp_new + kinetic_energy(p_new, inverse_mass) - h0
                delta = torch.nan_to_num(delta, nan=torch.inf)
                leaf_diverging = delta > MAX_ENERGY_ERROR
                n_leaves = n_leaves + active.long()
                accept = torch.exp(torch.clamp(-delta, max=0.0))
                sum_accept = sum_accept + torch.where(active, accept, 0.0)
                # progressive multinomial sampling within the subtree
                new_log_w = torch.logaddexp(sub_log_w, -delta)
                take_prob = torch.nan_to_num(torch.exp(-delta - new_log_w), nan=0.0)
                u = torch.rand(chains, generator=gen, dtype=dtype, device=device)
                take = active & (u < take_prob)
                sub_q = _where(take, q_new, sub_q)
                sub_lp = torch.where(take, lp_new, sub_lp)
                sub_g = _where(take, g_new, sub_g)
                sub_log_w = torch.where(active, new_log_w, sub_log_w)
                sub_sum = _where(active, sub_sum + p_new, sub_sum)
                idx_min, idx_max = _checkpoint_range(n)
                if n % 2 == 0:
                    ckpt_p[:, idx_max] = _where(active, p_new, ckpt_p[:, idx_max])
                    ckpt_sum[:, idx_max] = _where(active, sub_sum, ckpt_sum[:, idx_max])
                else:
                    turning = torch.zeros_like(done)
                    for k in range(idx_min, idx_max + 1):
                        span_sum = sub_sum - ckpt_sum[:, k] + ckpt_p[:, k]
                        turning = turning | _is_turning(ckpt_p[:, k], p_new, span_sum, inverse_mass)
                    sub_turning = sub_turning | (active & turning)
                sub_diverging = sub_diverging | (active & leaf_diverging)
                active = active & ~sub_turning & ~sub_diverging

            # biased progressive sampling between the tree and the new subtree
            valid = working & ~sub_turning & ~sub_diverging
            take_prob = torch.exp(torch.clamp(sub_log_w - log_w, max=0.0))
            u = torch.rand(chains, generator=gen, dtype=dtype, device=device)
            take = valid & (u < take_prob)
            prop_q = _where(take, sub_q, prop_q)
            prop_lp = torch.where(take, sub_lp, prop_lp)
            prop_g = _where(take, sub_g, prop_g)
            log_w = torch.where(working, torch.logaddexp(log_w, sub_log_w), log_w)
            to_right = working & right
            to_left = working & ~right
            q_right, p_right, g_right = (
                _where(to_right, q, q_right),
                _where(to_right, p, p_right),
                _where(to_right, g, g_right),
            )
            q_left, p_left, g_left = (
                _where(to_left, q, q_left),
                _where(to_left, p, p_left),
                _where(to_left, g, g_left),
            )
            p_sum = _where(working, p_sum + sub_sum, p_sum)
            whole_turning = _is_turning(p_left, p_right, p_sum, inverse_mass)
            depth = depth + working.long()
            diverging = diverging | (working & sub_diverging)
            done = done | (working & (sub_turning | sub_diverging | whole_turning))

        accept_prob = sum_accept / n_leaves.clamp(min=1).to(dtype)
        stats = Stats(accept_prob, diverging, n_leaves, depth)
        return State(prop_q, prop_lp, prop_g), stats

    return transition


def nuts(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    *,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    chains: int = 4,
    seed: Seed = None,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    mass_matrix: str = "diag",
    progress_bar: bool = False,
) -> MCMCResult:
    """Draw from the density proportional to exp(log_prob) with the No-U-Turn Sampler
    (multinomial, generalized U-turn criterion), all chains as one batch (log_prob is
    vmapped over them). Warmup adapts each chain's step size (dual averaging of the mean
    acceptance statistic to ``target_accept``) and mass matrix (Stan's windows); its draws
    are discarded.

    Args:
        log_prob: the log density, up to a constant, of one point (d,) -> a 0-d tensor,
            written with torch operations (it is differentiated by torch.func).
        init: the start, (d,) for every chain or (chains, d), floating point; its dtype
            and device are the draws'.
        num_samples: draws kept per chain, >= 4.
        num_warmup: warmup iterations per chain, >= 0 (under 20: step size only; 0: step
            size 1 and the identity mass matrix).
        chains: number of chains, >= 1.
        seed: an int, a torch.Generator or None (fresh entropy).
        target_accept: the mean acceptance statistic warmup aims for, in (0, 1).
        max_tree_depth: the most doublings per transition (at most 2^max_tree_depth - 1
            leapfrog steps), >= 1.
        mass_matrix: "diag" or "dense".
        progress_bar: show a tqdm progress bar.

    Returns:
        An MCMCResult; samples have shape (chains, num_samples, d); tree_depth and
        num_steps per transition.

    Raises:
        TypeError, ValueError: a bad argument (named in the message), before any work.
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
        progress_bar=progress_bar,
    )
