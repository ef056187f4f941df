"""Gradient estimators of d/dφ E_{q_φ}[f]: score function (with baselines) and pathwise."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from ..core.distributed import Group, active_group, sum_across
from ..core.losses import score_function_surrogate
from ..core.options import Option
from ._sampling import (
    Seed,
    check_callable,
    check_distribution,
    check_n,
    check_seed,
    evaluate,
    local_draws,
)

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


def score_function_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist: Distribution,
    n: int,
    *,
    baseline: str | Baseline | None = None,
    seed: Seed = None,
    group: Group | bool = None,
) -> torch.Tensor:
    """A surrogate whose gradient is the score-function (REINFORCE) estimate of ∇_φ E_q[f].

    ``∇ E[f] ≈ 1/n Σ (f(x_i) - b_i) ∇ log q(x_i)`` for x_i ~ q drawn without a gradient path
    (so it works for discrete and non-reparameterizable q), built on
    :func:`probcalc.core.score_function_surrogate`, the same surrogate probcalc.rl's policy
    gradients use. If ``f`` itself depends on φ, its own gradient is added.

    Args:
        f: maps samples ``(n, *event_shape)`` to ``(n,)``.
        dist: a distribution whose parameters require grad.
        n: samples (at least 2).
        baseline: None, "mean" or "leave-one-out" (each x_i's baseline is the mean of f over
            the others, which keeps the estimate unbiased).
        seed: an int or a torch.Generator.
        group: a torch.distributed process group (default: the default group when
            initialized; False: local). The n draws are split across the ranks with
            per-rank streams; the baselines use the mean of f over every rank, and every
            rank returns the same value. Gradients follow DistributedDataParallel's
            convention: average the ranks' ``.grad``.

    Returns:
        A 0-d tensor whose value is the sample mean of f (an estimate of E[f]) and whose
        ``backward()`` puts the gradient estimate into the parameters' ``.grad``.

    Raises:
        ValueError: n < 2, an unknown baseline, f not returning shape (n,), or a seed out of
            torch's range.
        TypeError: f is not callable, dist is not a Distribution, or seed is not an int,
            Generator or None.
        NonFiniteError: f is NaN or infinite at a sample.
    """
    check_callable(f, "f")
    dist = check_distribution(dist)
    n = check_n(n)
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
    surrogate = sum_across(score_function_surrogate(log_prob, weights, reduction="sum"),
                           group) / n  # fmt: skip
    # value: the estimate of E[f]; gradient: the score term plus f's own dependence on φ
    return sum_across(values.sum(), group) / n + (surrogate - surrogate.detach())


def pathwise_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist: Distribution,
    n: int,
    *,
    seed: Seed = None,
    group: Group | bool = None,
) -> torch.Tensor:
    """The reparameterization (pathwise) estimate: ``mean_i f(x_i(φ, ε_i))`` with x = rsample.

    Its gradient is ``1/n Σ ∇_φ f(x_i)``, usually of far lower variance than the score
    function's, for distributions with ``rsample``. ``group`` splits the draws across
    processes as for :func:`score_function_grad`.

    Returns:
        A 0-d tensor: the sample mean of f, differentiable with respect to φ.

    Raises:
        TypeError: dist has no reparameterized sampler (``has_rsample`` is False), or is not
            a Distribution; f is not callable; a seed that is not an int, Generator or None.
        ValueError: n < 2, f not returning shape (n,), or a seed out of torch's range.
        NonFiniteError: f is NaN or infinite at a sample.
    """
    check_callable(f, "f")
    dist = check_distribution(dist)
    n = check_n(n)
    check_seed(seed)
    if not dist.has_rsample:
        raise TypeError(
            f"pathwise_grad needs a reparameterized sampler, and {type(dist).__name__} has "
            f"none (has_rsample is False); use score_function_grad"
        )
    group = active_group(group)
    _, values = local_draws(dist, n, seed, group, lambda x: _values(f, x), reparameterized=True)
    return sum_across(values.sum(), group) / n
