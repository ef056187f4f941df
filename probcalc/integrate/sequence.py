"""Rules of growing accuracy, applied until two in a row agree: the loop shared by
cubature's fixed rules (Gauss-Legendre, sparse grids) and expect_normal."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .adaptive import finite_or_zero

__all__ = ["SequenceOutcome", "refine_rules"]

# One rule of a sequence: its label, and a function giving (points, weights) in the
# coordinates ``evaluate`` takes, weights already scaled (Jacobian, normalization).
Rule = tuple[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class SequenceOutcome:
    """The last rule's total (B,) with its graph, |change from the rule before| as its
    error, and, in log space, the shift to add back."""

    total: torch.Tensor
    error: torch.Tensor
    n_evals: int
    converged: bool
    message: str
    shift: torch.Tensor | None


def refine_rules(
    evaluate: Callable[[torch.Tensor], torch.Tensor],
    rules: Iterable[Rule],
    *,
    rtol: float,
    atol: float,
    max_evals: int,
    log_space: bool = False,
) -> SequenceOutcome:
    """Σ w_i f(x_i) for each rule in turn (one call of ``evaluate`` a rule) until the change
    from the previous rule (at least the round-off floor 4 eps Σ|w_i f(x_i)|) is at most
    ``max(atol, rtol |total|)``, the rules run out, or the next rule would pass
    ``max_evals``. With ``log_space``, ``evaluate`` returns log values
    and the total is Σ w exp(value - shift).

    Raises:
        ValueError: when ``max_evals`` is below the first rule's size.
    """
    n_evals = 0
    total = error = previous = previous_shift = shift = None
    message = "the rules ran out before two agreed"
    for label, make in rules:
        points, weights = make()
        if n_evals + len(points) > max_evals:
            if total is None:
                raise ValueError(
                    f"max_evals = {max_evals} is below the {len(points)} points of {label}"
                )
            message = f"max_evals = {max_evals} reached before {label}"
            break
        values = evaluate(points)
        n_evals += len(points)
        if log_space:
            shift = finite_or_zero(values.detach().amax(dim=0))
            values = torch.exp(values - shift)
        total = (weights[:, None] * values).sum(dim=0)
        # a round-off floor of 4 eps Σ|w f|: the change between two rules carries both
        # sums' rounding, except where both are exact (a polynomial integrand) and agree to
        # the last bit; the floor covers that case. (The adaptive driver's 50 eps, QUADPACK's,
        # would stop sparse grids, whose weights cancel (Σ|w| is 40 Σw at level 6 in 5-D),
        # from converging in float32.)
        eps = torch.finfo(values.dtype).eps
        floor = 4 * eps * (weights.abs()[:, None] * values.detach().abs()).sum(dim=0)
        if previous is not None:
            rescale = torch.exp(previous_shift - shift) if log_space else 1.0
            error = torch.maximum((total.detach() - previous * rescale).abs(), floor)
            if bool((error <= torch.clamp(rtol * total.detach().abs(), min=atol)).all()):
                message = f"converged at {label}, {n_evals} evaluations"
                return SequenceOutcome(total, error, n_evals, True, message, shift)
            message = f"{label} changed the result by {float(error.max()):.3g}"
        previous, previous_shift = total.detach(), shift
    if error is None:
        error = torch.full_like(total.detach(), torch.inf)
    return SequenceOutcome(total, error, n_evals, False, "not converged: " + message, shift)
