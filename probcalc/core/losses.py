"""Negative log-likelihoods and surrogate losses, on torch.distributions.

The likelihoods are what log joints and fitted models are built from; the surrogates are
the losses whose gradients are Monte Carlo gradient estimators. ``score_function_surrogate``
is the one score-function (REINFORCE) surrogate of the library: probcalc.mc's gradient
estimators and probcalc.rl's policy gradients both call it.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Categorical, Normal, Poisson, constraints

from .options import Option

__all__ = [
    "Reduction",
    "bernoulli_nll",
    "categorical_nll",
    "clipped_surrogate_loss",
    "gaussian_nll",
    "poisson_nll",
    "score_function_surrogate",
]


class Reduction(Option):
    """How a loss combines its per-observation terms."""

    SUM = "sum"  # the log-likelihood of the whole data set: what a log joint needs
    MEAN = "mean"  # the average: what stochastic minibatch training needs
    NONE = "none"  # the per-observation terms, the broadcast shape of the inputs


def _reduce(terms: torch.Tensor, reduction: str | Reduction) -> torch.Tensor:
    reduction = Reduction.parse(reduction, name="reduction")
    if reduction is Reduction.SUM:
        return terms.sum()
    if reduction is Reduction.MEAN:
        return terms.mean()
    return terms


def _check(value: torch.Tensor, constraint: constraints.Constraint, what: str) -> None:
    """Raise ValueError when ``value`` is outside ``constraint``.

    Skipped when the check cannot be decided eagerly (``value`` batched inside vmap): the
    data is checked on the eager call, which is where bad data comes in.
    """
    try:
        ok = bool(constraint.check(value).all())
    except RuntimeError:
        return
    if not ok:
        bad = value[~constraint.check(value)].reshape(-1)[:5].tolist()
        raise ValueError(f"{what} must be in {constraint}; got values such as {bad}")


def gaussian_nll(
    y: torch.Tensor,
    mean: torch.Tensor,
    scale: torch.Tensor | float,
    *,
    reduction: str | Reduction = "sum",
) -> torch.Tensor:
    """``-log N(y | mean, scale²)`` = ``(y - mean)² / 2 scale² + log scale + log(2π)/2``.

    Shapes broadcast. Raises ValueError for a non-positive scale.
    """
    scale = torch.as_tensor(scale, dtype=torch.as_tensor(mean).dtype)
    _check(scale, constraints.positive, "scale")
    return _reduce(-Normal(mean, scale, validate_args=False).log_prob(y), reduction)


def bernoulli_nll(
    y: torch.Tensor, logits: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log Bernoulli(y | sigmoid(logits))`` = ``softplus(logits) - y * logits``.

    ``y`` holds 0s and 1s (any floating or integer dtype); shapes broadcast.
    Raises ValueError for other values of ``y``.
    """
    y = torch.as_tensor(y).to(dtype=logits.dtype)
    _check(y, constraints.boolean, "y")
    return _reduce(-Bernoulli(logits=logits, validate_args=False).log_prob(y), reduction)


def categorical_nll(
    y: torch.Tensor, logits: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log softmax(logits)[y]``, the softmax cross-entropy.

    Shapes: ``logits`` ``(..., K)``, ``y`` integer class indices ``(...)``.
    Raises ValueError for indices outside ``0..K-1``.
    """
    y = torch.as_tensor(y)
    if y.is_floating_point():
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    _check(y, constraints.integer_interval(0, logits.shape[-1] - 1), "y")
    return _reduce(-Categorical(logits=logits, validate_args=False).log_prob(y), reduction)


def poisson_nll(
    y: torch.Tensor, log_rate: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log Poisson(y | exp(log_rate))`` = ``exp(log_rate) - y log_rate + log y!``.

    Takes the log rate (the canonical link), so a linear predictor plugs in directly.
    Raises ValueError when ``y`` is not a non-negative integer.
    """
    y = torch.as_tensor(y).to(dtype=log_rate.dtype)
    _check(y, constraints.nonnegative_integer, "y")
    return _reduce(-Poisson(log_rate.exp(), validate_args=False).log_prob(y), reduction)


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        # broadcasting (n,) against (n, 1) would silently give an (n, n) loss
        raise ValueError(f"inputs must have the same shape, got {shapes}")


def score_function_surrogate(
    log_prob: torch.Tensor, weight: torch.Tensor, *, reduction: str | Reduction = "mean"
) -> torch.Tensor:
    """The score-function (REINFORCE) surrogate ``mean_i(stop_grad(w_i) * log q(x_i))``.

    Its gradient with respect to the parameters of ``q`` is the score-function estimate
    ``mean_i w_i ∇ log q(x_i)`` of ``∇ E_q[w]``, for samples ``x_i ~ q`` drawn without a
    gradient path. Subtract a baseline from ``weight`` beforehand to cut the variance; for
    a loss to minimize (policy gradients), negate it.

    Args:
        log_prob: ``log q(x_i)``, differentiable in q's parameters, shape ``(n, ...)``.
        weight: ``w_i`` (a return, an advantage, ``f(x_i)``), the same shape; detached here.
        reduction: "mean" (default), "sum" or "none".

    Raises:
        ValueError: when the shapes differ.
    """
    _same_shape(log_prob=log_prob, weight=weight)
    return _reduce(weight.detach() * log_prob, reduction)


def clipped_surrogate_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantage: torch.Tensor,
    *,
    clip_range: float = 0.2,
    reduction: str | Reduction = "mean",
) -> torch.Tensor:
    """PPO's clipped surrogate loss ``-mean(min(r A, clip(r, 1-ε, 1+ε) A))``.

    ``r = exp(log_prob - old_log_prob)`` is the probability ratio of the new policy to the
    one that collected the data (Schulman et al., 2017, eq. 7). ``old_log_prob`` and
    ``advantage`` are detached. At ``r = 1`` its gradient is minus the score-function
    surrogate's.

    Raises:
        ValueError: when the shapes differ or ``clip_range`` is not positive.
    """
    if not clip_range > 0:
        raise ValueError(f"clip_range must be positive, got {clip_range}")
    _same_shape(log_prob=log_prob, old_log_prob=old_log_prob, advantage=advantage)
    ratio = torch.exp(log_prob - old_log_prob.detach())
    advantage = advantage.detach()
    unclipped = ratio * advantage
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantage
    return _reduce(-torch.minimum(unclipped, clipped), reduction)
