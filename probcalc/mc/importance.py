"""importance_sampling: the log evidence and self-normalized expectations, with PSIS."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from ..core.errors import ConvergenceWarning
from ..core.options import Option
from ..core.results import Estimate
from ._sampling import Seed, check_distribution, check_n, evaluate, seeded
from .psis import KHAT_THRESHOLD, psis

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
        stderr: its delta-method standard error, ``sd(w) / (mean(w) √n)``.
        ess: the effective sample size ``(Σ w)² / Σ w²`` of the (smoothed) weights.
        khat: the Pareto k-hat of the weights (computed in either smoothing mode).
        log_weights: the log weights, shape (n,): Pareto-smoothed with ``smoothing="psis"``.
        samples: the proposal's draws, shape (n, *event_shape).
    """

    log_evidence: torch.Tensor
    stderr: torch.Tensor
    ess: float
    khat: float
    log_weights: torch.Tensor
    samples: torch.Tensor

    def expectation(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Estimate:
        """The self-normalized estimate of ``E_target[f]`` = ``Σ w̄_i f(x_i)``, with the
        delta-method standard error ``sqrt(Σ w̄_i² (f_i - estimate)²)``."""
        values, shape = evaluate(f, self.samples)
        normalized = torch.softmax(self.log_weights.detach(), dim=0)[:, None]
        value = (normalized * values).sum(dim=0)
        stderr = torch.sqrt((normalized**2 * (values.detach() - value.detach()) ** 2).sum(dim=0))
        return Estimate(value.reshape(shape), stderr.reshape(shape), len(self.samples))


def importance_sampling(
    log_target: Callable[[torch.Tensor], torch.Tensor],
    proposal: Distribution,
    n: int,
    *,
    seed: Seed = None,
    smoothing: str | Smoothing = "psis",
) -> ImportanceResult:
    """Importance sampling of an unnormalized density p̃ with the proposal q.

    Draws n samples from q, weighs them by ``w = p̃(x) / q(x)`` and returns the log
    evidence ``log Z ≈ logsumexp(log w) - log n`` with its standard error, the effective
    sample size and the PSIS k-hat diagnostic; warns (ConvergenceWarning) when k-hat > 0.7.

    Args:
        log_target: ``log p̃``, mapping samples ``(n, *event_shape)`` to ``(n,)``; -inf
            (outside the support) is allowed, NaN and +inf are not.
        proposal: a torch distribution with ``sample`` and ``log_prob``.
        n: the number of draws (at least 10, so that the tail can be fitted).
        seed: an int or a torch.Generator.
        smoothing: "psis" (default) or "none": which weights ``log_weights``, ``ess`` and
            ``expectation`` use. The log evidence always uses the raw weights (unbiased).

    Raises:
        ValueError: n < 10, an unknown smoothing, or log_target of the wrong shape.
        TypeError: proposal is not a Distribution.
        NonFiniteError: log_target is NaN or +inf at a sample (the message names it).
    """
    smoothing = Smoothing.parse(smoothing, name="smoothing")
    proposal = check_distribution(proposal)
    n = check_n(n, minimum=10)
    device = proposal.mean.device if proposal.mean.numel() else torch.device("cpu")
    with seeded(seed, device):
        samples = proposal.sample((n,))
    log_p = _log_target_values(log_target, samples)
    log_q = proposal.log_prob(samples)
    log_q = log_q.reshape(n, -1).sum(dim=1)
    log_weights = log_p - log_q
    log_evidence = torch.logsumexp(log_weights, dim=0) - math.log(n)
    scaled = torch.exp(log_weights.detach() - log_weights.detach().max())
    stderr = scaled.std() / (scaled.mean() * math.sqrt(n))
    smoothed, khat = psis(log_weights.detach())
    if float(khat) > KHAT_THRESHOLD:
        warnings.warn(
            ConvergenceWarning(
                f"importance_sampling: Pareto k-hat = {float(khat):.2f} > {KHAT_THRESHOLD}: "
                f"the weights' tail is too heavy for the estimate to be trusted; widen the "
                f"proposal"
            ),
            stacklevel=2,
        )
    used = smoothed if smoothing is Smoothing.PSIS else log_weights.detach()
    normalized = torch.softmax(used, dim=0)
    ess = float(1.0 / (normalized**2).sum())
    return ImportanceResult(log_evidence, stderr, ess, float(khat), used, samples)


def _log_target_values(
    log_target: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor
) -> torch.Tensor:
    values, shape = evaluate(log_target, samples, what="log_target", allow_minus_inf=True)
    if shape != torch.Size():
        n = len(samples)
        raise ValueError(f"log_target must map {n} samples to shape ({n},), got ({n}, *{shape})")
    return values[:, 0]
