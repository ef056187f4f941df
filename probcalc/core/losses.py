"""Negative log-likelihoods and surrogate losses, on torch.distributions.

The likelihoods are what log joints and fitted models are built from; the surrogates are
the losses whose gradients are Monte Carlo gradient estimators. ``score_function_surrogate``
is the one score-function (REINFORCE) surrogate of the library: probcalc.mc's gradient
estimators and probcalc.rl's policy gradients both call it.

Inputs are tensors or array-likes of real numbers; integer parameters become floating point;
shapes, dtypes and supports are checked before any work. The likelihoods propagate NaN and
infinity as the elementwise functions they are: inside an objective a parameter may
overflow at an optimizer's trial point, and the optimizer, not the loss, decides what to do
with the non-finite value (minimize backtracks; fit and the estimators raise
NonFiniteError). The surrogates, whose weights, advantages and old log-probabilities are
data, reject a NaN or infinity there (ValueError) unless the tensor is traced (it requires
grad, or a torch.func transform such as vmap traces it).
"""

from __future__ import annotations

import math
import numbers

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
        if terms.numel() == 0:
            raise ValueError(
                "reduction='mean' of no observations (empty inputs) is undefined; pass at "
                "least one observation, or use reduction='sum'"
            )
        return terms.mean()
    return terms


def _traced(value: torch.Tensor) -> bool:
    """Whether ``value`` is a parameter being differentiated: it requires grad, or a
    torch.func transform (grad, jvp, vmap) traces it."""
    return value.requires_grad or torch._C._functorch.is_functorch_wrapped_tensor(value)


def _tensor(value: object, name: str) -> torch.Tensor:
    """``value`` as a real tensor (array-like accepted); TypeError naming ``name`` otherwise."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a tensor or array-like of real numbers, got "
                f"{type(value).__name__} {value!r:.60}"
            ) from None
    if value.is_complex():
        raise TypeError(f"{name} must be real, got {value.dtype}")
    return value


def _floating(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype that the floating tensors promote to (the default dtype when none is)."""
    dtype = None
    for tensor in tensors:
        if tensor.is_floating_point():
            dtype = tensor.dtype if dtype is None else torch.promote_types(dtype, tensor.dtype)
    return torch.get_default_dtype() if dtype is None else dtype


def _check_finite(value: torch.Tensor, name: str) -> None:
    """ValueError when data (an untraced tensor) holds a NaN or an infinity. Skipped while
    torch.compile traces (a data-dependent branch would split the graph): compiled code is
    checked only where its caller checks its data (PPO's rollouts are checked as they are
    collected)."""
    if torch.compiler.is_compiling() or _traced(value) or not value.is_floating_point():
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].reshape(-1)[:5].tolist()
        raise ValueError(f"{name} must be finite; got values such as {bad}")


def _check_broadcast(**tensors: torch.Tensor) -> None:
    try:
        torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
        raise ValueError(f"the shapes of {shapes} do not broadcast together") from None


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

    Args:
        y: the observations; shapes broadcast.
        mean: the means.
        scale: the standard deviations, positive.
        reduction: "sum" (default: the log-likelihood of the data set), "mean" or "none"
            (the terms, of the broadcast shape).

    Returns:
        The negative log-likelihood: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: a scale that is not positive (NaN included), shapes that do not
            broadcast, an unknown reduction, or "mean" of no observations.
        TypeError: inputs that are not real numbers.
    """
    reduction = Reduction.parse(reduction, name="reduction")
    y, mean, scale = _tensor(y, "y"), _tensor(mean, "mean"), _tensor(scale, "scale")
    dtype = _floating(mean, y, scale)
    y, mean, scale = (t if t.is_floating_point() else t.to(dtype) for t in (y, mean, scale))
    _check_broadcast(y=y, mean=mean, scale=scale)
    _check(scale, constraints.positive, "scale")
    return _reduce(-Normal(mean, scale, validate_args=False).log_prob(y), reduction)


def bernoulli_nll(
    y: torch.Tensor, logits: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log Bernoulli(y | sigmoid(logits))`` = ``softplus(logits) - y * logits``.

    Args:
        y: 0s and 1s (any floating, integer or bool dtype); shapes broadcast.
        logits: the log-odds.
        reduction: "sum" (default: the log-likelihood of the data set), "mean" or "none"
            (the terms, of the broadcast shape).

    Returns:
        The negative log-likelihood: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: other values of ``y`` (NaN included), shapes that do not broadcast, an
            unknown reduction, or "mean" of no observations.
        TypeError: inputs that are not real numbers.
    """
    reduction = Reduction.parse(reduction, name="reduction")
    y, logits = _tensor(y, "y"), _tensor(logits, "logits")
    logits = logits if logits.is_floating_point() else logits.to(_floating(y))
    y = y.to(dtype=logits.dtype)
    _check_broadcast(y=y, logits=logits)
    _check(y, constraints.boolean, "y")
    return _reduce(-Bernoulli(logits=logits, validate_args=False).log_prob(y), reduction)


def categorical_nll(
    y: torch.Tensor, logits: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log softmax(logits)[y]``, the softmax cross-entropy.

    Args:
        y: integer class indices, shape ``(...)``, broadcasting against
            ``logits.shape[:-1]``.
        logits: unnormalized log-probabilities, shape ``(..., K)``.
        reduction: "sum" (default: the log-likelihood of the data set), "mean" or "none"
            (the terms, of the broadcast shape).

    Returns:
        The negative log-likelihood: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: indices outside ``0..K-1``, floating-point indices, logits without a
            class dimension, shapes that do not broadcast, an unknown reduction, or "mean"
            of no observations.
        TypeError: inputs that are not real numbers.
    """
    reduction = Reduction.parse(reduction, name="reduction")
    y, logits = _tensor(y, "y"), _tensor(logits, "logits")
    if y.is_floating_point():
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must have shape (..., K) with K >= 1 classes, got {tuple(logits.shape)}"
        )
    logits = logits if logits.is_floating_point() else logits.to(torch.get_default_dtype())
    _check_broadcast(y=y, **{"logits without the class dimension": logits[..., 0]})
    _check(y, constraints.integer_interval(0, logits.shape[-1] - 1), "y")
    return _reduce(-Categorical(logits=logits, validate_args=False).log_prob(y), reduction)


def poisson_nll(
    y: torch.Tensor, log_rate: torch.Tensor, *, reduction: str | Reduction = "sum"
) -> torch.Tensor:
    """``-log Poisson(y | exp(log_rate))`` = ``exp(log_rate) - y log_rate + log y!``.

    Args:
        y: non-negative integer counts (any dtype); shapes broadcast.
        log_rate: the log of the rate (the canonical link), so a linear predictor plugs in
            directly.
        reduction: "sum" (default: the log-likelihood of the data set), "mean" or "none"
            (the terms, of the broadcast shape).

    Returns:
        The negative log-likelihood: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: a ``y`` that is not a non-negative integer (NaN and infinity included),
            shapes that do not broadcast, an unknown reduction, or "mean" of no
            observations.
        TypeError: inputs that are not real numbers.
    """
    reduction = Reduction.parse(reduction, name="reduction")
    y, log_rate = _tensor(y, "y"), _tensor(log_rate, "log_rate")
    log_rate = log_rate if log_rate.is_floating_point() else log_rate.to(_floating(y))
    y = y.to(dtype=log_rate.dtype)
    _check_broadcast(y=y, log_rate=log_rate)
    _check(y, constraints.nonnegative_integer, "y")
    return _reduce(-Poisson(log_rate.exp(), validate_args=False).log_prob(y), reduction)


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        # broadcasting (n,) against (n, 1) would silently give an (n, n) loss
        raise ValueError(f"inputs must have the same shape, got {shapes}")


def _surrogate_inputs(**tensors: object) -> list[torch.Tensor]:
    """The surrogates' inputs as real floating tensors of one shape, the untraced finite."""
    found = {name: _tensor(value, name) for name, value in tensors.items()}
    dtype = _floating(*found.values())
    found = {name: t if t.is_floating_point() else t.to(dtype) for name, t in found.items()}
    _same_shape(**found)
    for name, tensor in found.items():
        _check_finite(tensor, name)
    return list(found.values())


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

    Returns:
        The surrogate: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: when the shapes differ, data is not finite, or "mean" has no terms.
        TypeError: inputs that are not real numbers.
    """
    reduction = Reduction.parse(reduction, name="reduction")
    log_prob, weight = _surrogate_inputs(log_prob=log_prob, weight=weight)
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

    Args:
        log_prob: the new policy's log-probabilities of the actions taken, differentiable.
        old_log_prob: the collecting policy's, the same shape; detached here.
        advantage: the advantage estimates A, the same shape; detached here.
        clip_range: ε, positive; ``inf`` is no clipping.
        reduction: "mean" (default), "sum" or "none".

    Returns:
        The loss to minimize: a 0-d tensor, or the terms with ``reduction="none"``.

    Raises:
        ValueError: when the shapes differ, ``clip_range`` is not positive, data is not
            finite, or "mean" has no terms.
        TypeError: inputs that are not real numbers.
    """
    if isinstance(clip_range, bool) or not isinstance(clip_range, numbers.Real):
        raise TypeError(f"clip_range must be a number, got {clip_range!r}")
    if not clip_range > 0:
        raise ValueError(f"clip_range must be positive, got {clip_range}")
    reduction = Reduction.parse(reduction, name="reduction")
    log_prob, old_log_prob, advantage = _surrogate_inputs(
        log_prob=log_prob, old_log_prob=old_log_prob, advantage=advantage
    )
    ratio = torch.exp(log_prob - old_log_prob.detach())
    advantage = advantage.detach()
    unclipped = ratio * advantage
    if math.isinf(clip_range):
        return _reduce(-unclipped, reduction)
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantage
    return _reduce(-torch.minimum(unclipped, clipped), reduction)
