"""Gaussian variational inference: maximize the ELBO with the pathwise gradient estimator.

``fit`` finds the Gaussian q(z) closest to p(z) ∝ exp(log_prob(z)) in KL(q || p) by
stochastic gradient ascent on ``ELBO(q) = E_q[log p(z)] + H[q]`` (automatic differentiation
variational inference, Kucukelbir et al. 2017): the expectation is estimated with
:func:`probcalc.mc.pathwise_grad` over draws from q, the entropy is in closed form, and the
steps are torch.optim.Adam's. The fit is then checked with the Pareto k-hat of
``log p - log q`` over fresh draws from q (Yao, Vehtari, Simpson & Gelman, 2018).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from tqdm.auto import tqdm

from ..core.errors import ConvergenceWarning, NonFiniteError
from ..core.evaluation import (
    check_callable,
    check_finite_start,
    check_scalar_output,
    evaluate_batch,
    vmap_points,
    without_distribution_validation,
)
from ..core.options import Option
from ..core.random import Seed, check_seed, generator, seeded
from ..mc.gradients import pathwise_grad
from ..mc.psis import KHAT_THRESHOLD, psis

__all__ = ["Family", "VIResult", "fit"]

INIT_SCALE = 0.1  # q starts as N(init, 0.1² I): narrow, so its first draws stay near init
N_KHAT_SAMPLES = 4000  # fresh draws from q for the k-hat diagnostic
DECAY_START = 0.5  # the learning rate is constant for this fraction of the steps, ...
FINAL_LR_FACTOR = 0.01  # ... then falls along a cosine to this fraction of itself


class Family(Option):
    """The Gaussian family :func:`fit` searches."""

    MEANFIELD = "meanfield"  # N(m, diag(s²)): independent coordinates
    FULLRANK = "fullrank"  # N(m, L Lᵀ), L lower triangular with a positive diagonal


@dataclass(frozen=True)
class VIResult:
    """The outcome of :func:`fit`.

    Attributes:
        distribution: the fitted q (detached): ``Independent(Normal(m, s), 1)`` for
            "meanfield", ``MultivariateNormal(m, scale_tril=L)`` for "fullrank"; ``.mean``,
            ``.variance``, ``.sample`` and ``.log_prob`` as torch gives them, and
            ``.covariance_matrix`` for "fullrank".
        elbo: the ELBO estimate at each step, shape ``(num_steps,)`` (detached); each entry
            is a Monte Carlo estimate over ``n_samples`` draws, so the trace is noisy.
        khat: the Pareto k-hat of ``log p(z) - log q(z)`` over fresh draws z ~ q (a 0-d
            tensor): below 0.5 q is close to p and importance sampling from it is reliable,
            above 0.7 q misses p's mass (or p's tails are heavier than q's).
        n_evals: the number of points log_prob was evaluated at: init twice (once
            directly, once under vmap), ``num_steps * n_samples`` draws in the optimization
            and 4000 for k-hat.
        n_grad_evals: the number of those at which its gradient was taken: init and the
            optimization's draws.
        converged: True when the ELBO trace is finite and khat <= 0.7.
        message: how the fit ended, with the k-hat and the final ELBO.
    """

    distribution: Distribution
    elbo: torch.Tensor
    khat: torch.Tensor
    n_evals: int
    n_grad_evals: int
    converged: bool
    message: str


def _count(value: object, name: str, minimum: int) -> int:
    """``value`` as an int >= minimum; TypeError for a non-number, ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not math.isfinite(value) or not float(value).is_integer() or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_init(init: Any) -> torch.Tensor:
    """``init`` as a detached (d,) floating tensor with finite entries."""
    try:
        x = torch.as_tensor(init)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"init must be a tensor or a sequence of numbers, got {init!r}") from None
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"init must be real numbers, got {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(
            f"init must have shape (d,) with d >= 1, got {tuple(x.shape)}; flatten it "
            f"(init.reshape(-1)) and reshape inside log_prob"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"init must be finite, got {x.tolist()}")
    return x.detach().clone()


def _check_start(log_prob: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor) -> None:
    """log_prob must give one finite number, with a finite gradient, at init, and run under
    vmap."""
    where = f"init = {init.tolist()}" if init.numel() <= 6 else "init"
    with without_distribution_validation():
        point = init.clone().requires_grad_(True)
        value = check_scalar_output(log_prob(point), what="log_prob", where=where)
        gradient = torch.zeros_like(init)  # a log_prob that ignores z has zero gradient
        if value.requires_grad:
            (found,) = torch.autograd.grad(value, point, allow_unused=True)
            gradient = gradient if found is None else found
    check_finite_start(value, what="log_prob", where="init", point=init, gradient=gradient)
    # the optimization maps log_prob over draws with torch.func.vmap: try it once here
    try:
        vmap_points(log_prob, scalar="log_prob")(init[None])
    except RuntimeError as error:
        raise TypeError(
            f"log_prob must run under torch.func.vmap, which fit maps it over draws with; it "
            f"failed at {where} ({error}); avoid float(), .item(), .tolist() and "
            f"data-dependent Python branches on its argument"
        ) from error


def _parameters(family: Family, init: torch.Tensor) -> list[torch.Tensor]:
    """The unconstrained parameters: the mean, and log s (meanfield) or L with log of its
    diagonal (fullrank)."""
    loc = init.clone().requires_grad_(True)
    if family is Family.MEANFIELD:
        log_scale = torch.full_like(init, math.log(INIT_SCALE)).requires_grad_(True)
        return [loc, log_scale]
    raw = torch.diag(torch.full_like(init, math.log(INIT_SCALE)))
    return [loc, raw.requires_grad_(True)]


def _distribution(family: Family, params: list[torch.Tensor]) -> Distribution:
    """q from its unconstrained parameters (differentiable in them)."""
    loc, raw = params
    if family is Family.MEANFIELD:
        return Independent(Normal(loc, raw.exp()), 1)
    scale_tril = torch.tril(raw, diagonal=-1) + torch.diag(raw.diagonal().exp())
    return MultivariateNormal(loc, scale_tril=scale_tril)


def _learning_rate_factor(num_steps: int) -> Callable[[int], float]:
    """Constant for the first half of the steps, then a cosine down to FINAL_LR_FACTOR: the
    stochastic gradient's noise around the optimum shrinks with the step size."""
    start = int(DECAY_START * num_steps)

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        progress = (step - start) / max(num_steps - start, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return FINAL_LR_FACTOR + (1.0 - FINAL_LR_FACTOR) * cosine

    return factor


def fit(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    *,
    family: str | Family = Family.MEANFIELD,
    num_steps: int = 2000,
    n_samples: int = 16,
    learning_rate: float = 0.05,
    seed: Seed = None,
    progress_bar: bool = False,
) -> VIResult:
    """Fit a Gaussian q to p(z) ∝ exp(log_prob(z)) by maximizing the ELBO.

    ``ELBO(q) = E_q[log p(z)] + H[q]``, so maximizing it minimizes KL(q || p). Each step
    estimates E_q[log p] with :func:`probcalc.mc.pathwise_grad` over ``n_samples`` draws
    (its gradient is the reparameterization gradient), adds q's entropy in closed form, and
    takes an Adam step on q's unconstrained parameters (the mean, and the log scales or the
    Cholesky factor with a log diagonal). q starts at ``N(init, 0.1² I)``. The learning rate
    is constant for the first half of the steps and then falls along a cosine to 1% of
    itself, which lets the iterates settle at the optimum instead of jittering around it.
    Afterwards 4000 fresh draws from q give the k-hat diagnostic of ``log p - log q``.

    For a Gaussian p = N(μ, Σ) the optimum is q = p for "fullrank", and
    ``N(μ, diag(1 / diag(Σ⁻¹)))`` for "meanfield" (which underestimates the marginal
    variances when coordinates are correlated).

    Args:
        log_prob: the log density up to a constant, of one point: shape (d,) to a 0-d
            tensor, built from torch operations; it is mapped over the draws with
            torch.func.vmap (torch.distributions' validation off), and must be finite on
            all of R^d: transform constrained parameters to unconstrained ones first.
        init: the starting mean, shape (d,) (a tensor or a sequence of numbers; integers
            become the default dtype). q lives in init's dtype and device.
        family: "meanfield" (diagonal covariance, 2d parameters) or "fullrank" (dense
            covariance, d + d(d+1)/2 parameters); or a :class:`Family`.
        num_steps: the number of Adam steps (>= 1).
        n_samples: the draws per step for the ELBO estimate (>= 2).
        learning_rate: Adam's initial learning rate (> 0).
        seed: an int (the same fit on every call), a torch.Generator (drawn from) or None
            (fresh entropy); torch's global random state is left untouched.
        progress_bar: show a tqdm bar with the recent ELBO.

    Returns:
        A :class:`VIResult`.

    Raises:
        TypeError: log_prob not callable, returning something other than a tensor, or
            failing under torch.func.vmap (float(), .item() on its argument);
            init not numbers; a seed that is not an int, Generator or None; num_steps or
            n_samples not a number; learning_rate not a number; progress_bar not a bool.
        ValueError: log_prob returning more than one number per point (say, a vector of
            per-observation terms: sum them); init not of shape (d,) or not finite; an
            unknown family; num_steps < 1, n_samples < 2, learning_rate not positive and
            finite; a negative seed or one of 2^64 or more.
        NonFiniteError: log_prob or its gradient is NaN or infinite at init (before any
            step), or log_prob is NaN or infinite at a draw during the optimization.

    Warns:
        ConvergenceWarning: when khat > 0.7 (q is a poor fit; the message gives k-hat), or
            the ELBO trace is not finite.
    """
    check_callable(log_prob, "log_prob")
    init = _check_init(init)
    family = Family.parse(family, name="family")
    num_steps = _count(num_steps, "num_steps", 1)
    n_samples = _count(n_samples, "n_samples", 2)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be positive and finite, got {learning_rate!r}")
    check_seed(seed)
    if not isinstance(progress_bar, bool):
        raise TypeError(f"progress_bar must be True or False, got {progress_bar!r}")
    _check_start(log_prob, init)

    draws = generator(seed, init.device)
    batched = vmap_points(log_prob, scalar="log_prob")
    params = _parameters(family, init)
    optimizer = torch.optim.Adam(params, lr=float(learning_rate))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor(num_steps))
    trace = torch.empty(num_steps, dtype=init.dtype, device=init.device)

    with tqdm(total=num_steps, disable=not progress_bar, desc="ELBO") as bar:
        for step in range(num_steps):
            q = _distribution(family, params)
            try:
                expected = pathwise_grad(batched, q, n_samples, seed=draws, group=False)
            except NonFiniteError as error:
                raise NonFiniteError(
                    f"log_prob is {error.value} at the draw z = {error.where} from q at step "
                    f"{step + 1} of {num_steps}; it must be finite on all of R^d: map "
                    f"constrained parameters to unconstrained ones (log of a scale, say)",
                    value=error.value,
                    where=error.where,
                ) from error
            elbo = expected + q.entropy()
            optimizer.zero_grad()
            (-elbo).backward()
            optimizer.step()
            schedule.step()
            trace[step] = elbo.detach()
            if progress_bar and (step % 50 == 0 or step == num_steps - 1):
                bar.set_postfix(elbo=f"{float(elbo):.4g}", refresh=False)
            bar.update(1)

    with torch.no_grad():
        q = _distribution(family, [param.detach() for param in params])
        with seeded(draws, init.device):
            z = q.sample((N_KHAT_SAMPLES,))
        log_p, _ = evaluate_batch(
            batched, z, what="log_prob", point_name="draw from q", allow_minus_inf=True
        )
        log_weights = log_p[:, 0] - q.log_prob(z)
    _, khat = psis(log_weights)

    finite = bool(torch.isfinite(trace).all())
    final = float(trace[-max(num_steps // 10, 1) :].mean())
    converged = finite and float(khat) <= KHAT_THRESHOLD
    figures = f"k-hat = {float(khat):.3g}, mean ELBO over the last 10% of the steps = {final:.6g}"
    if not finite:
        message = f"the ELBO trace is not finite; {figures}"
    elif converged:
        message = f"fitted a {family.value} Gaussian in {num_steps} steps; {figures}"
    else:
        message = (
            f"k-hat = {float(khat):.3g} > {KHAT_THRESHOLD}: the {family.value} Gaussian is a "
            f"poor fit to log_prob (its mass or tails differ); mean ELBO over the last 10% "
            f"of the steps = {final:.6g}; try family='fullrank', more steps, or a "
            f"reparameterization of the model"
        )
    if not converged:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return VIResult(
        distribution=q,
        elbo=trace,
        khat=khat,
        n_evals=2 + num_steps * n_samples + N_KHAT_SAMPLES,
        n_grad_evals=1 + num_steps * n_samples,
        converged=converged,
        message=message,
    )
