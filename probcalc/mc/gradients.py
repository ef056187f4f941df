"""Gradient estimators of d/dφ E_{q_φ}[f]: score function (with baselines) and pathwise."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from ..core.deprecation import renamed
from ..core.distributed import Group, active_group, sum_across
from ..core.evaluation import check_callable
from ..core.losses import score_function_surrogate
from ..core.options import Option
from ..core.random import Seed, check_seed
from ._sampling import check_distribution, check_n, evaluate, local_draws

__all__ = ["Baseline", "pathwise_grad", "score_function_grad"]


class Baseline(Option):
    """Baselines for :func:`score_function_grad`."""

    MEAN = "mean"  # subtract the sample mean of f: biased by a factor (n-1)/n
    LEAVE_ONE_OUT = "leave-one-out"  # subtract the mean of the other n-1: unbiased


def _values(f: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor) -> torch.Tensor:
    values, shape = evaluate(f, samples)
    if shape != torch.Size():
        raise ValueError(f"f must return one value a sample, shape (n,), got (n, *{tuple(shape)})")
    return values[:, 0]


@renamed("n", "n_samples")
def score_function_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist: Distribution,
    n_samples: int,
    *,
    baseline: str | Baseline | None = None,
    seed: Seed = None,
    group: Group | bool = None,
) -> torch.Tensor:
    """A surrogate whose gradient is the score-function (REINFORCE) estimate of ∇_φ E_q[f].

    ``∇ E[f] ≈ 1/n Σ (f(x_i) - b_i) ∇ log q(x_i)`` for n = ``n_samples`` draws x_i ~ q
    made without a gradient path (so it works for discrete and non-reparameterizable q),
    built on :func:`probcalc.core.score_function_surrogate`, the same surrogate
    probcalc.rl's policy gradients use. If ``f`` itself depends on φ, its own gradient is
    added.

    Args:
        f: maps samples ``(n, *event_shape)`` to ``(n,)``.
        dist: a distribution whose parameters require grad.
        n_samples: the number of draws (at least 2); the keyword ``n=`` still works, with a
            DeprecationWarning.
        baseline: None, "mean" or "leave-one-out" (each x_i's baseline is the mean of f over
            the others, which keeps the estimate unbiased).
        seed: an int (the same draws on every call), a torch.Generator (drawn from) or None
            (fresh entropy); torch's global random state is left untouched.
        group: a torch.distributed process group (default: the default group when
            initialized; False: local). The n draws are split across the ranks with
            per-rank streams; the baselines use the mean of f over every rank, and every
            rank returns the same value. Gradients follow DistributedDataParallel's
            convention: average the ranks' ``.grad``.

    Returns:
        A 0-d tensor whose value is the sample mean of f (an estimate of E[f]) and whose
        ``backward()`` puts the gradient estimate into the parameters' ``.grad``.

    Raises:
        ValueError: n_samples < 2, an unknown baseline, f not returning shape (n,), or a
            negative seed or one of 2^64 or more.
        TypeError: f is not callable, dist is not a Distribution, seed is not an int,
            Generator or None, or both ``n`` and ``n_samples`` are given.
        NonFiniteError: f is NaN or infinite at a sample.
    """
    check_callable(f, "f")
    dist = check_distribution(dist)
    n = check_n(n_samples)
    baseline = None if baseline is None else Baseline.parse(baseline, name="baseline")
    check_seed(seed)
    group = active_group(group)
    samples, values = local_draws(dist, n, seed, group, lambda x: _values(f, x))
    weights = values.detach()
    mean = sum_across(weights.sum(), group) / n  # over every rank
    if baseline is Baseline.MEAN:
        weights = weights - mean
    elif baseline is Baseline.LEAVE_ONE_OUT:
        weights = (weights - mean) * n / (n - 1)  # f_i - mean of the others
    log_prob = dist.log_prob(samples).reshape(len(samples), -1).sum(dim=1)
    surrogate = sum_across(score_function_surrogate(log_prob, weights, reduction="sum"), group)
    surrogate = surrogate / n
    # value: the estimate of E[f]; gradient: the score term plus f's own dependence on φ
    return sum_across(values.sum(), group) / n + (surrogate - surrogate.detach())


@renamed("n", "n_samples")
def pathwise_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist: Distribution,
    n_samples: int,
    *,
    seed: Seed = None,
    group: Group | bool = None,
) -> torch.Tensor:
    """The reparameterization (pathwise) estimate: ``mean_i f(x_i(φ, ε_i))`` with x = rsample.

    Its gradient is ``1/n Σ ∇_φ f(x_i)`` over n = ``n_samples`` draws, usually of far lower
    variance than the score function's, for distributions with ``rsample``. A batched
    ``dist`` (batch shape B, one distribution per state, say) gives samples
    ``(n, *B, *event_shape)``; f then averages over B itself. One draw is enough for an
    unbiased gradient (SAC's actor loss draws one action per state).

    Args:
        f: maps samples ``(n, *batch_shape, *event_shape)`` to ``(n,)``.
        dist: a distribution with ``rsample`` whose parameters require grad
            (:class:`~probcalc.mc.PointMass` for a deterministic choice).
        n_samples: the number of draws (at least 1; across processes at least 2 per
            process); the keyword ``n=`` still works, with a DeprecationWarning.
        seed: an int (the same draws on every call), a torch.Generator (drawn from) or None
            (fresh entropy); torch's global random state is left untouched.
        group: a torch.distributed process group (default: the default group when
            initialized; False: local); the draws are split across processes as for
            :func:`score_function_grad`.

    Returns:
        A 0-d tensor: the sample mean of f, differentiable with respect to φ.

    Raises:
        TypeError: dist has no reparameterized sampler (``has_rsample`` is False), or is not
            a Distribution; f is not callable; a seed that is not an int, Generator or None;
            both ``n`` and ``n_samples`` given.
        ValueError: n_samples < 1, f not returning shape (n,), or a negative seed or one of
            2^64 or more.
        NonFiniteError: f is NaN or infinite at a sample.
    """
    check_callable(f, "f")
    dist = check_distribution(dist)
    n = check_n(n_samples, minimum=1)
    check_seed(seed)
    if not dist.has_rsample:
        raise TypeError(
            f"pathwise_grad needs a reparameterized sampler, and {type(dist).__name__} has "
            f"none (has_rsample is False); use score_function_grad"
        )
    group = active_group(group)
    _, values = local_draws(dist, n, seed, group, lambda x: _values(f, x), reparameterized=True)
    return sum_across(values.sum(), group) / n
