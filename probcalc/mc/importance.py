"""importance_sampling: the log evidence and self-normalized expectations, with PSIS."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Distribution

from ..core.deprecation import renamed
from ..core.distributed import Group, active_group, gather_moments, rank, sum_across
from ..core.errors import ConvergenceWarning
from ..core.evaluation import check_callable
from ..core.options import Option
from ..core.random import Seed, check_seed
from ..core.results import Estimate
from ._sampling import check_distribution, check_n, evaluate, local_draws
from .psis import KHAT_THRESHOLD, psis, smooth_tail, tail_size

__all__ = ["ImportanceResult", "Smoothing", "importance_sampling"]


class Smoothing(Option):
    """How :func:`importance_sampling` treats the largest weights."""

    PSIS = "psis"  # Pareto-smoothed (Vehtari et al.)
    NONE = "none"  # raw weights


@dataclass(frozen=True)
class ImportanceResult:
    """The outcome of :func:`importance_sampling`.

    Attributes:
        log_evidence: ``log (1/n Σ w_i)`` with ``w = p̃(x)/q(x)``: the log of an unbiased
            estimate of Z (so slightly biased low, by about stderr²/2); differentiable with
            respect to parameters log_target closes over.
        stderr: its delta-method standard error, ``sd(w) / (mean(w) √n)`` (a detached 0-d
            tensor).
        ess: the effective sample size ``(Σ w)² / Σ w²`` of the (smoothed) weights.
        khat: the Pareto k-hat of the weights (computed in either smoothing mode).
        log_weights: the log weights, shape (n,): Pareto-smoothed with ``smoothing="psis"``.
        samples: the proposal's draws, shape (n, *event_shape).
        n_evals: the number of evaluations of log_target (n, over every rank).
        group: the process group the draws were split over (False: one process); across
            processes ``log_weights`` and ``samples`` are this rank's share, and
            ``expectation`` combines every rank's.
    """

    log_evidence: torch.Tensor
    stderr: torch.Tensor
    ess: float
    khat: float
    log_weights: torch.Tensor
    samples: torch.Tensor
    n_evals: int
    group: Group | bool = False

    def expectation(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Estimate:
        """The self-normalized estimate of ``E_target[f]`` = ``Σ w̄_i f(x_i)``, with the
        delta-method standard error ``sqrt(Σ w̄_i² (f_i - estimate)²)``.

        Args:
            f: maps the samples ``(n, *event_shape)`` to ``(n,)`` or ``(n, *out)``.

        Returns:
            Estimate(value, stderr, n_evals), ``n_evals`` the number of samples f was
            evaluated at (over every rank).

        Raises:
            TypeError: ``f`` is not callable.
            ValueError: f's output does not have the samples along its first dimension.
            NonFiniteError: f is NaN or infinite at a sample.
        """
        check_callable(f, "f")
        values, shape = evaluate(f, self.samples)
        log_w = self.log_weights.detach()
        shift = _max_across(log_w.max(), self.group)
        w = torch.exp(log_w - shift)[:, None]
        total = sum_across(w.sum(), self.group)
        value = sum_across((w * values).sum(dim=0), self.group) / total
        spread = (w**2 * (values.detach() - value.detach()) ** 2).sum(dim=0)
        stderr = torch.sqrt(sum_across(spread, self.group)) / total
        count = torch.tensor(float(len(self.samples)), dtype=torch.float64)
        n = int(sum_across(count, self.group))
        return Estimate(value.reshape(shape), stderr.reshape(shape), n)


@renamed("n", "n_samples")
def importance_sampling(
    log_target: Callable[[torch.Tensor], torch.Tensor],
    proposal: Distribution,
    n_samples: int,
    *,
    seed: Seed = None,
    smoothing: str | Smoothing = "psis",
    group: Group | bool = None,
) -> ImportanceResult:
    """Importance sampling of an unnormalized density p̃ with the proposal q.

    Draws n = ``n_samples`` samples from q, weighs them by ``w = p̃(x) / q(x)`` and returns the log
    evidence ``log Z ≈ logsumexp(log w) - log n`` with its standard error, the effective
    sample size and the PSIS k-hat diagnostic; warns (ConvergenceWarning) when k-hat > 0.7.

    Args:
        log_target: ``log p̃``, mapping samples ``(n, *event_shape)`` to ``(n,)``; -inf
            (outside the support) is allowed, NaN and +inf are not.
        proposal: a torch distribution with ``sample`` and ``log_prob``.
        n_samples: the number of draws (at least 10, so that the tail can be fitted); the
            keyword ``n=`` still works, with a DeprecationWarning.
        seed: an int (the same draws on every call), a torch.Generator (drawn from) or None
            (fresh entropy); torch's global random state is left untouched.
        smoothing: "psis" (default) or "none": which weights ``log_weights``, ``ess`` and
            ``expectation`` use. The log evidence always uses the raw weights (unbiased).
        group: a torch.distributed process group; by default the default group when
            torch.distributed is initialized. The n draws are split across its ranks, each
            with its own stream seeded from ``seed`` (numpy.random.SeedSequence.spawn); the
            log-sum-exp, the stderr terms and the ESS are all-reduced, and only each rank's
            M + 1 largest log weights are gathered to fit the Pareto tail, so every rank
            returns the same log evidence, stderr, ESS and k-hat. Under an initialized group
            every rank must call it; ``group=False`` computes locally. A failure on one rank
            raises on every rank. Gradients follow DistributedDataParallel's convention:
            average the ranks' ``.grad``.

    Returns:
        ImportanceResult(log_evidence, stderr, ess, khat, log_weights, samples, n_evals,
        group).

    Raises:
        ValueError: n_samples < 10, an unknown smoothing, log_target of the wrong shape, a
            negative seed or one of 2^64 or more, or a target that is -inf at every draw.
        TypeError: log_target is not callable, proposal is not a Distribution, seed is not
            an int, Generator or None, or both ``n`` and ``n_samples`` are given.
        NonFiniteError: log_target is NaN or +inf at a sample (the message names it).
    """
    smoothing = Smoothing.parse(smoothing, name="smoothing")
    check_callable(log_target, "log_target")
    proposal = check_distribution(proposal, "proposal")
    n = check_n(n_samples, minimum=10)
    check_seed(seed)
    group = active_group(group)

    def log_weights_at(samples: torch.Tensor) -> torch.Tensor:
        log_q = proposal.log_prob(samples).reshape(len(samples), -1).sum(dim=1)
        return _log_target_values(log_target, samples) - log_q

    samples, log_weights = local_draws(proposal, n, seed, group, log_weights_at, per_rank=10)
    count = len(samples)
    detached = log_weights.detach()
    shift = _max_across(detached.max(), group)  # the largest log weight over all ranks
    if not torch.isfinite(shift):
        raise ValueError("every log weight is -inf: the target has no mass where q draws")
    scaled = torch.exp(log_weights - shift)
    log_evidence = torch.log(sum_across(scaled.sum(), group)) + shift - math.log(n)
    raw = scaled.detach()
    # two-pass moments per rank, merged exactly: no cancellation in Σw² - n mean²
    local_mean = raw.mean()
    _, mean, m2 = gather_moments(count, local_mean, ((raw - local_mean) ** 2).sum(), group)
    stderr = torch.sqrt(m2 / (n - 1)) / (mean * math.sqrt(n))
    smoothed, khat = _smoothed(detached, n, group)
    if float(khat) > KHAT_THRESHOLD:
        warnings.warn(
            ConvergenceWarning(
                f"importance_sampling: Pareto k-hat = {float(khat):.2f} > {KHAT_THRESHOLD}: "
                f"the weights' tail is too heavy for the estimate to be trusted; widen the "
                f"proposal"
            ),
            stacklevel=2,
        )
    used = smoothed if smoothing is Smoothing.PSIS else detached
    w = torch.exp(used - _max_across(used.max(), group))
    w_sum, w_squares = sum_across(torch.stack([w.sum(), (w**2).sum()]), group)
    ess = float(w_sum**2 / w_squares)
    return ImportanceResult(log_evidence, stderr, ess, float(khat), used, samples, n, group)


def _max_across(value: torch.Tensor, group: Group | bool) -> torch.Tensor:
    if group is False:
        return value
    out = value.detach().clone()
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.MAX, group=group)
    return out


def _smoothed(log_weights: torch.Tensor, n: int, group: Group | bool) -> tuple[torch.Tensor, float]:
    """PSIS over the weights of every rank, sharing only each rank's M + 1 largest."""
    if group is False:
        smoothed, khat = psis(log_weights)
        return smoothed, float(khat)
    tail = tail_size(n)
    local = log_weights.double()
    k = min(tail + 1, local.numel())
    top_values, top_index = torch.topk(local, k)
    size = torch.distributed.get_world_size(group)
    # (value, rank, index) rows padded to tail + 1 with -inf, gathered from every rank
    rows = torch.full((tail + 1, 3), -math.inf, dtype=torch.float64)
    rows[:k, 0] = top_values
    rows[:, 1] = rank(group)
    rows[:k, 2] = top_index.double()
    parts = [torch.empty_like(rows) for _ in range(size)]
    torch.distributed.all_gather(parts, rows, group=group)
    every = torch.cat(parts)
    # descending by value, ties by rank then index: the same order on every rank
    table = every.numpy()
    order = np.lexsort((table[:, 2], table[:, 1], -table[:, 0]))
    top = every[torch.as_tensor(order[: tail + 1])]
    replaced, khat = smooth_tail(top[:, 0].numpy())
    smoothed = log_weights.clone()
    if replaced is None:
        return smoothed, -math.inf
    mine = top[:tail, 1] == rank(group)
    index = top[:tail, 2][mine].long()
    smoothed[index] = torch.as_tensor(replaced, dtype=log_weights.dtype)[mine.numpy()]
    return smoothed, khat


def _log_target_values(
    log_target: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor
) -> torch.Tensor:
    values, shape = evaluate(log_target, samples, what="log_target", allow_minus_inf=True)
    if shape != torch.Size():
        n = len(samples)
        raise ValueError(f"log_target must map {n} samples to shape ({n},), got ({n}, *{shape})")
    return values[:, 0]
