"""Globally adaptive integration over boxes, batched: one call of the integrand per round.

The driver keeps a list of regions (boxes in a reference space) with an estimate and an
error each. Every round it marks the regions with the largest errors — the fewest whose
refinement could bring the total under the tolerance — bisects each along the axis its
rule says is worst, and evaluates all children's nodes in ONE call. Regions are tensors,
not Python objects, so the bookkeeping is a few tensor operations per round.

The rule here is the tensor product of a Gauss-Kronrod pair (in 1-D, plain G_n-K_(2n+1)).
Its error estimate is the sum over axes of ``|Q - Q_k|``, where ``Q_k`` replaces the
Kronrod weights along axis k by the Gauss weights: the same function values, reweighted,
so the per-axis estimates are free and also choose the axis to split.

Those differences can be tiny by chance where the integrand has a jump or a kink (the two
rules happen to agree for that position of the jump), and a split's change can be tiny by
chance too. So every region also tests, along every axis, whether its values are smooth:
on each line of nodes along the axis it expands the values in Legendre polynomials (the
interpolant of degree 2n). Smooth values have coefficients that fall off fast; a jump or a
kink leaves a tail that falls off like k^-1 or k^-2. Where the tail does not fall off, the
region's error along that axis is at least ``bound_factor`` times the tail's size, a
figure that, for a jump or kink anywhere between the outermost nodes, bounds the Kronrod
rule's error (``_smoothness_constants`` computes the factor for each order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .rules import gauss_kronrod

__all__ = [
    "AdaptiveOutcome",
    "ProductKronrodRule",
    "default_gauss_order",
    "finite_or_zero",
    "integrate_adaptive",
]

# An evaluation callback: reference points (N, d) and region pieces (N,) -> values (N, B),
# with the map to the user's coordinates and its Jacobian applied, plus the number of
# integrand evaluations it made.
Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]

# The most points evaluated in one round (memory bound: points, values and their graph).
_MAX_POINTS_PER_ROUND = 2**21


# The tail is the top 4 Legendre coefficients (fewer below G4-K9); a region's values
# along an axis count as rough when the tail's norm is more than ``decay_threshold`` times
# that of the 4 coefficients below it. The threshold is half the smallest such ratio of a
# kink anywhere between the second nodes from either end (0.03 to 0.06 for G4-K9 to
# G10-K21; jumps give 0.5 or more). Smooth values pass it unless a singularity lies near the
# region: within a Bernstein ellipse of parameter about 4, where the Kronrod rule's error is
# about 4^-(3n+2) of the values, so treating them as rough costs at most a split.
_BOUND_SAFETY = 2.0  # the bound factor over the largest ratio of error to tail measured
_DECAY_MARGIN = 0.5  # the decay threshold over the smallest decay of a kink measured
_HIDDEN_MARGIN = 0.5  # the hidden-change threshold over the smallest ratio measured


class _SmoothnessTest(NamedTuple):
    """The constants of the roughness test of one Gauss-Kronrod order (on [-1, 1])."""

    top: np.ndarray
    """The rows of the map from the values at the 2n + 1 nodes to the top 2w Legendre
    coefficients of their interpolant (w = min(4, n), highest last)."""
    bound_factor: float
    """``c * max |top w coefficients|`` bounds the Kronrod error of a kink |x - t| or a
    jump [x > t] at any t between the outermost nodes (kinks: between the second nodes from
    either end; nearer the ends their error is below 1 % of its largest)."""
    decay_threshold: float
    """Rough when the top w coefficients' norm exceeds this times the next w's."""
    hidden_change: float
    """A kink or jump within the children's outermost nodes of the midpoint makes the
    change of a split at least twice this times the parent's bound."""


@functools.lru_cache(maxsize=32)
def _smoothness_constants(n: int) -> _SmoothnessTest:
    """The roughness test of G_n-K_(2n+1), measured on kinks and jumps at 20,000 places
    (for n = 1 there are too few coefficients: no test, thresholds inf)."""
    nodes, kronrod, _ = (w.numpy() for w in gauss_kronrod(n))
    k = nodes.size
    window = min(4, (k - 1) // 2)
    to_coefficients = np.linalg.inv(np.polynomial.legendre.legvander(nodes, k - 1))
    top = to_coefficients[k - 2 * window :]
    if window < 2:
        return _SmoothnessTest(top, np.inf, np.inf, np.inf)

    def measure(t: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(Kronrod error, tail, decay) of a kink and of a jump at each t."""
        out = []
        for values, exact in (
            (np.abs(nodes - t[:, None]), ((1 + t) ** 2 + (1 - t) ** 2) / 2),
            ((nodes > t[:, None]).astype(float), 1 - t),
        ):
            coefficients = np.abs(values @ top.T)
            with np.errstate(invalid="ignore"):  # 0/0 where a jump is outside the nodes
                decay = np.linalg.norm(coefficients[:, window:], axis=1) / np.linalg.norm(
                    coefficients[:, :window], axis=1
                )
            tail = coefficients[:, window:].max(axis=1)
            out.append((np.abs(values @ kronrod - exact), tail, decay))
        return out

    t = np.linspace(-1.0, 1.0, 20_001)[1:-1]
    (kink_error, kink_tail, kink_decay), (jump_error, jump_tail, _) = measure(t)
    kinks, jumps = (t > nodes[1]) & (t < nodes[-2]), (t > nodes[0]) & (t < nodes[-1])
    bound_factor = _BOUND_SAFETY * max(
        np.max(kink_error[kinks] / kink_tail[kinks]), np.max(jump_error[jumps] / jump_tail[jumps])
    )
    # a parent on [-1, 1] whose kink or jump hides from both children: |t| < the gap
    gap = (1 + nodes[0]) / 2
    hidden = [error / (bound_factor * tail) for error, tail, _ in measure(np.linspace(-gap, gap))]
    return _SmoothnessTest(
        top,
        bound_factor,
        _DECAY_MARGIN * kink_decay[kinks].min(),
        _HIDDEN_MARGIN * min(ratio.min() for ratio in hidden),
    )


class ProductKronrodRule:
    """The tensor product over d axes of the Gauss-Kronrod pair G_n-K_(2n+1) on [-1, 1]^d."""

    def __init__(self, n: int, d: int, dtype: torch.dtype, device: torch.device) -> None:
        self.n, self.d = n, d
        nodes, self.kronrod, self.gauss = gauss_kronrod(n, dtype=dtype, device=device)
        k = nodes.numel()
        grids = torch.meshgrid(*([nodes] * d), indexing="ij")
        self.grid = torch.stack([g.reshape(-1) for g in grids], dim=-1)  # (k^d, d)
        self.points_per_region = k**d
        self.k = k
        test = _smoothness_constants(n)
        self.bound_factor, self.decay_threshold = test.bound_factor, test.decay_threshold
        self.hidden_change = test.hidden_change
        self.top_coefficients = torch.as_tensor(test.top, dtype=dtype, device=device)
        # weights of the k^(d-1) lines along an axis: the product of the other axes' weights
        lines = torch.ones((), dtype=dtype, device=device)
        for _ in range(d - 1):
            lines = torch.outer(lines.reshape(-1), self.kronrod.abs())
        self.line_weights = lines.reshape(-1)

    def _weights_with(self, axis: int, weights: torch.Tensor) -> list[torch.Tensor]:
        """Kronrod weights on every axis but ``axis``, which gets ``weights``."""
        return [weights if j == axis else self.kronrod for j in range(self.d)]

    def nodes(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """The rule's nodes in each region: shape (m, k^d, d)."""
        center, half = 0.5 * (lower + upper), 0.5 * (upper - lower)
        return center[:, None, :] + half[:, None, :] * self.grid

    def apply(
        self, values: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """From values (m, k^d, B): estimates (m, B), per-axis error estimates ``|Q - Q_k|``
        (m, d, B), the round-off floor (m, B) below which the sum cannot be trusted
        (50 eps Σ|w f|, as QUADPACK), and per-axis roughness bounds (m, d, B): 0 along an
        axis where the values are smooth (or their tail is below the floor), else the bound
        from the Legendre tail."""
        m, _, batch = values.shape
        volume = torch.prod(0.5 * (upper - lower), dim=1)  # (m,)
        cube = values.reshape((m,) + (self.k,) * self.d + (batch,))
        estimate = _contract(cube, [self.kronrod] * self.d) * volume[:, None]
        detached, volume = cube.detach(), volume.detach()
        difference = self.kronrod - self.gauss
        # per axis: Kronrod weights everywhere but that axis, which gets K - G
        per_axis = [_contract(detached, self._weights_with(j, difference)) for j in range(self.d)]
        axis_errors = torch.stack(per_axis, dim=1).abs() * volume[:, None, None]
        absolute = _contract(detached.abs(), [self.kronrod.abs()] * self.d)
        floor = 50 * torch.finfo(values.dtype).eps * absolute * volume[:, None]
        rough = torch.stack([self._rough(detached, j) for j in range(self.d)], dim=1)
        rough = rough * volume[:, None, None]
        # below the round-off floor the tail is noise in the values, not a jump or kink
        return estimate, axis_errors, floor, torch.where(rough > floor[:, None, :], rough, 0.0)

    def _rough(self, cube: torch.Tensor, axis: int) -> torch.Tensor:
        """The roughness bound along ``axis`` on [-1, 1]^d (m, B): ``bound_factor`` times the
        line-weighted sum of each line's largest tail coefficient, where the line-weighted
        tail's norm exceeds ``decay_threshold`` times that of the coefficients below it;
        else 0."""
        m, batch = cube.shape[0], cube.shape[-1]
        if self.decay_threshold == np.inf:  # G1-K3: too few coefficients for the test
            return torch.zeros(m, batch, dtype=cube.dtype, device=cube.device)
        lines = torch.movedim(cube, axis + 1, -1).reshape(m, -1, batch, self.k)
        coefficients = (lines @ self.top_coefficients.T).abs()  # (m, k^(d-1), B, 2w)
        spectrum = torch.einsum("l,mlbc->mbc", self.line_weights, coefficients)
        window = spectrum.shape[-1] // 2
        below = torch.linalg.vector_norm(spectrum[..., :window], dim=-1)
        decay = torch.linalg.vector_norm(spectrum[..., window:], dim=-1) / torch.clamp(
            below, min=torch.finfo(cube.dtype).tiny
        )
        tail = coefficients[..., window:].amax(dim=-1)
        bound = self.bound_factor * torch.einsum("l,mlb->mb", self.line_weights, tail)
        return torch.where(decay > self.decay_threshold, bound, 0.0)


def _contract(cube: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """Contract axes 1..d of cube (m, k, ..., k, B) with the given weight vectors -> (m, B)."""
    out = cube
    for w in reversed(weights):
        out = torch.tensordot(out, w, dims=([out.dim() - 2], [0]))  # last node axis
    return out


def finite_or_zero(shift: torch.Tensor) -> torch.Tensor:
    """A log-space shift: the largest log value, or 0 where every value was -inf."""
    return torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))


@dataclass(frozen=True)
class AdaptiveOutcome:
    """What the driver found: value (B,) with graph, error (B,), counts and status."""

    value: torch.Tensor
    error: torch.Tensor
    n_evals: int
    converged: bool
    message: str
    log_shift: torch.Tensor | None


def integrate_adaptive(
    evaluate: Evaluate,
    rule: ProductKronrodRule,
    lower: torch.Tensor,
    upper: torch.Tensor,
    pieces: torch.Tensor,
    *,
    rtol: float,
    atol: float,
    max_evals: int,
    log_space: bool = False,
    edges: torch.Tensor | None = None,
    resolution: torch.Tensor | None = None,
) -> AdaptiveOutcome:
    """Integrate over the union of the boxes [lower_i, upper_i] (reference coordinates).

    ``evaluate(points, pieces)`` returns the integrand times the Jacobian of the map from
    reference coordinates (or, with ``log_space``, its log) as an (N, B) tensor. With
    ``log_space`` the driver integrates exp(values - shift) with a running shift (the
    largest log value seen), so that the value is ``log(sum) + shift`` without overflow.

    ``edges`` (d, E) lists per axis the coordinates of the faces where the integrand may
    be singular (default: the outer faces of the regions given; pad with NaN): children of
    a split that touch one get the larger safety factor. ``resolution`` (one per piece)
    is the smallest distance from the lower face of the reference box (axis 0) at which
    the map still gives points distinct from that face: no split puts a node below it
    (default 0). A region that needs more is left unsplit, and the result is not converged.

    A region whose values are rough along the axis it is split on passes the roughness to
    a child, unless the jump or kink sits between the midpoint and the children's outermost
    nodes, where neither child's nodes see it (and a child's children would miss it the
    same way, so the change of their split would be 0). So when neither child is rough
    along that axis while the split changed the estimate by a good part of the parent's
    bound, as such a jump or kink does (a smooth region that only looked rough changes far
    less), both children keep the parent's error along it and the parent is split again,
    at 9/16 instead of 1/2, which puts the jump well inside a child. This happens once per
    parent; the first children's points count in ``n_evals``.

    Stops when every integrand's total error is at most ``max(atol, rtol |value|)``, or
    when the next round would exceed ``max_evals`` evaluations, or when no region can be
    split further (round-off).

    Raises:
        ValueError: when ``max_evals`` is below the first round's points.
    """
    first_round = rule.points_per_region * len(lower)
    if max_evals < first_round:
        raise ValueError(
            f"max_evals = {max_evals} is below the first round's {first_round} points "
            f"({len(lower)} regions of {rule.points_per_region})"
        )
    eps = torch.finfo(lower.dtype).eps
    tiny = torch.finfo(lower.dtype).tiny
    n_evals, rounds = 0, 0
    shift: torch.Tensor | None = None
    regions: _Regions | None = None
    new_lower, new_upper, new_pieces = lower, upper, pieces
    split: _Split | None = None  # the regions split last round
    if edges is None:  # the domain's faces, where endpoint singularities sit
        edges = torch.stack([lower.amin(dim=0), upper.amax(dim=0)], dim=1)
    while True:
        rounds += 1
        points = rule.nodes(new_lower, new_upper)  # (k, p, d)
        k, p, d = points.shape
        values, calls = evaluate(points.reshape(-1, d), new_pieces.repeat_interleave(p))
        n_evals += calls
        if log_space:
            largest = values.detach().amax(dim=0)  # (B,)
            new_shift = finite_or_zero(largest if shift is None else torch.maximum(shift, largest))
            if regions is not None:
                factor = torch.exp(shift - new_shift)
                regions.rescale(factor)
                if split is not None:  # the parents' figures must be on the same scale
                    split = split.rescaled(factor)
            shift = new_shift
            values = torch.exp(values - shift)
        estimate, fresh, floor, rough = rule.apply(values.reshape(k, p, -1), new_lower, new_upper)
        retry: _Split | None = None  # parents to split again, at 9/16
        retry_rows = torch.zeros(0, dtype=torch.long, device=lower.device)
        if split is None:
            axis_errors = torch.maximum(fresh, rough)
        else:
            axis_errors = split.children_errors(estimate, fresh, rough, new_lower, new_upper, edges)
            hidden = split.hidden(estimate, rough, rule.hidden_change)  # (m,)
            if bool(hidden.any()):
                retry = split.subset(hidden)
                pairs = torch.cat([hidden, hidden])
                rows = torch.nonzero(pairs).squeeze(1)
                along = split.axes.repeat(2)[rows]
                kept = torch.maximum(
                    axis_errors[rows, along], split.axis_errors.repeat(2, 1, 1)[rows, along]
                )
                axis_errors[rows, along] = kept
                retry_rows = rows  # relative to the children, lefts then rights
        children = _Regions(
            new_lower, new_upper, new_pieces, estimate, axis_errors, fresh, floor, rough
        )
        offset = 0 if regions is None else len(regions.pieces)
        regions = children if regions is None else regions.join(children)
        retry_rows = retry_rows + offset

        total = regions.estimates.sum(dim=0)
        total_error = regions.errors().sum(dim=0)
        tolerance = torch.clamp(rtol * total.detach().abs(), min=atol)
        if bool((total_error <= tolerance).all()):
            message = f"converged in {rounds} rounds, {n_evals} evaluations"
            return AdaptiveOutcome(total, total_error, n_evals, True, message, shift)

        # mark the fewest regions whose errors leave at most half the tolerance behind
        scaled = torch.clamp(tolerance, min=tiny)
        normalized = (regions.errors() / scaled).amax(dim=1)  # (m,)
        axes = (regions.axis_errors / scaled).amax(dim=2).argmax(dim=1)  # (m,)
        splittable = regions.splittable(axes, eps, tiny)
        cuts = torch.full_like(normalized, 0.5)  # where each region is cut, in its width
        if resolution is not None:
            # a cut at c of the width puts the left child's lowest node along axis 0 at
            # lower + c (1 + g_min)/2 width: at a midpoint where that is at least the
            # resolution, else at the smallest c that keeps it there (when c <= 3/4), which
            # halves the width of the end region that cannot be split (in float32, where
            # the resolution at an end other than 0 is about 4e-4)
            offset = (1 + float(rule.grid[:, 0].min())) / 2
            lo = regions.lower[:, 0]
            width = regions.upper[:, 0] - lo
            needed = (resolution[regions.pieces] - lo) / torch.clamp(offset * width, min=tiny)
            cuts = torch.clamp(needed, min=0.5)
            splittable &= cuts <= _LARGEST_CUT
        normalized = torch.where(splittable, normalized, 0.0)
        normalized[retry_rows] = 0.0  # split again as pairs, below
        order = torch.argsort(normalized, descending=True)
        remaining = normalized.sum() - torch.cumsum(normalized[order], 0)
        count = int((remaining > 0.5).sum()) + 1
        if float(normalized.sum()) <= 0.5:  # what is left over is in regions too small to split
            count = 0
        stuck = regions.errors()[~splittable].sum(dim=0)  # (B,)
        if bool((stuck > tolerance).any()):  # no split can bring the total under it
            count, retry = 0, None
        # the children's round-off floors add up to about the parent's (50 eps ∫|f| over
        # the domain): where their sum alone is above the tolerance (an integral that
        # cancels, |∫f| << ∫|f|) and the rule's own error is already below it (so the value
        # the tolerance is relative to is known), splitting cannot help
        rounding = regions.floors.sum(dim=0)  # (B,)
        truncation = regions.axis_errors.sum(dim=(0, 1))  # (B,)
        cancels = bool(((rounding > tolerance) & (truncation <= rounding)).any())
        if cancels:
            count, retry = 0, None
        cost_per_split = 2 * p * max(1, calls // (k * p))  # two children, reflections counted
        budget = min(max_evals - n_evals, _MAX_POINTS_PER_ROUND) // cost_per_split
        retries = 0 if retry is None else len(retry.axes)
        if retries > budget:  # their children keep the parents' errors
            retry, retries, retry_rows = None, 0, retry_rows[:0]
        if (count == 0 and retries == 0) or budget < 1:
            worst = float((total_error / torch.clamp(tolerance, min=1e-300)).max())
            if cancels:
                ratio = rounding / torch.clamp(tolerance, min=tiny)
                worst_item = int(ratio.argmax())
                share = float(
                    total[worst_item].detach().abs() / (rounding[worst_item] / (50 * eps))
                )
                reason = (
                    f"round-off alone exceeds the tolerance: 50 eps Σ|w f| is "
                    f"{float(ratio.max()):.3g} times it, as the integral cancels (|∫f| is "
                    f"{share:.2g} of ∫|f|); give an atol or a larger rtol"
                )
            elif budget < 1:
                reason = f"max_evals = {max_evals} reached"
            else:
                reason = "the regions that hold the error cannot be split further (round-off)"
            message = (
                f"not converged: {reason} after {rounds} rounds; the error estimate is "
                f"{worst:.3g} times the tolerance"
            )
            return AdaptiveOutcome(total, total_error, n_evals, False, message, shift)
        marked = order[: min(count, budget - retries)]
        split, (new_lower, new_upper, new_pieces) = regions.split(
            marked, axes[marked], cuts[marked]
        )
        if retry is not None:
            half = len(retry_rows) // 2
            left, right = retry_rows[:half], retry_rows[half:]
            boxes = _bisect(
                regions.lower[left],
                regions.upper[right],
                regions.pieces[left],
                retry.axes,
                _RETRY_FRACTION,
            )
            split, (new_lower, new_upper, new_pieces) = _interleave(
                (split, (new_lower, new_upper, new_pieces)), (retry, boxes)
            )
            marked = torch.cat([marked, retry_rows])
        regions = regions.without(marked)


# The largest cut (a fraction of the width) that keeps a node off the resolution limit.
_LARGEST_CUT = 0.75

# Where a parent is split again when neither child's nodes saw its roughness: a jump that
# hid between the midpoint and a child's outermost node (within 0.012 of the parent's
# width for G4-K9, less for higher orders) is then 0.05 or more inside a child.
_RETRY_FRACTION = 9 / 16


def _bisect(
    lower: torch.Tensor,
    upper: torch.Tensor,
    pieces: torch.Tensor,
    axes: torch.Tensor,
    fraction: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each box along its axis at ``fraction`` of its width (one for all, or one per
    box): children [lefts, rights]. A fraction of 1/2 cuts at the exact midpoint."""
    rows = torch.arange(len(axes), device=axes.device)
    lo, hi = lower[rows, axes], upper[rows, axes]
    fraction = torch.as_tensor(fraction, dtype=lo.dtype, device=lo.device)
    middle = torch.where(fraction == 0.5, 0.5 * (lo + hi), lo + fraction * (hi - lo))
    left_upper, right_lower = upper.clone(), lower.clone()
    left_upper[rows, axes] = middle
    right_lower[rows, axes] = middle
    return (
        torch.cat([lower, right_lower]),
        torch.cat([left_upper, upper]),
        pieces.repeat(2),
    )


Boxes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # lower (m, d), upper (m, d), pieces


def _interleave(first: tuple[_Split, Boxes], second: tuple[_Split, Boxes]) -> tuple[_Split, Boxes]:
    """Two splits as one: parents [first, second], children [lefts 1, lefts 2, rights 1,
    rights 2], the layout ``_Split.children_errors`` expects."""
    (split_1, boxes_1), (split_2, boxes_2) = first, second
    m_1, m_2 = len(split_1.axes), len(split_2.axes)

    def merged(one: torch.Tensor, two: torch.Tensor) -> torch.Tensor:
        return torch.cat([one[:m_1], two[:m_2], one[m_1:], two[m_2:]])

    lower, upper, pieces = (merged(*pair) for pair in zip(boxes_1, boxes_2, strict=True))
    return split_1.join(split_2), (lower, upper, pieces)


@dataclass
class _Regions:
    """The active regions: boxes, pieces, estimates (m, B) with their graph, per-axis error
    estimates (m, d, B), the per-axis ``|Q - Q_k|`` of their own nodes (m, d, B), round-off
    floors (m, B) and roughness bounds (m, d, B), 0 along axes where they are smooth."""

    lower: torch.Tensor
    upper: torch.Tensor
    pieces: torch.Tensor
    estimates: torch.Tensor
    axis_errors: torch.Tensor
    fresh: torch.Tensor
    floors: torch.Tensor
    rough: torch.Tensor

    def errors(self) -> torch.Tensor:
        """Each region's error estimate (m, B): the sum over axes, at least the floor."""
        return torch.maximum(self.axis_errors.sum(dim=1), self.floors)

    def rescale(self, factor: torch.Tensor) -> None:
        """Multiply by exp(old shift - new shift) when the log-space shift grows."""
        self.estimates = self.estimates * factor
        self.axis_errors = self.axis_errors * factor
        self.fresh = self.fresh * factor
        self.floors = self.floors * factor
        self.rough = self.rough * factor

    def join(self, other: _Regions) -> _Regions:
        return _Regions(
            *(
                torch.cat([mine, theirs])
                for mine, theirs in zip(self._fields(), other._fields(), strict=True)
            )
        )

    def without(self, marked: torch.Tensor) -> _Regions:
        keep = torch.ones(len(self.pieces), dtype=torch.bool, device=self.pieces.device)
        keep[marked] = False
        return _Regions(*(field[keep] for field in self._fields()))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (
            self.lower,
            self.upper,
            self.pieces,
            self.estimates,
            self.axis_errors,
            self.fresh,
            self.floors,
            self.rough,
        )

    def splittable(self, axes: torch.Tensor, eps: float, tiny: float) -> torch.Tensor:
        """Whether bisecting along ``axes`` still gives distinct floating-point midpoints."""
        lo = self.lower.gather(1, axes[:, None]).squeeze(1)
        hi = self.upper.gather(1, axes[:, None]).squeeze(1)
        width = hi - lo
        return (width > 8 * eps * torch.maximum(lo.abs(), hi.abs())) & (width > 1e3 * tiny)

    def split(
        self, marked: torch.Tensor, axes: torch.Tensor, cuts: torch.Tensor
    ) -> tuple[_Split, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Cut the marked regions along ``axes`` at ``cuts`` of their widths (1/2: bisect):
        children [lefts..., rights...]."""
        rows = torch.arange(len(marked), device=axes.device)
        parents = _Split(
            self.estimates[marked].detach(),
            self.axis_errors[marked],
            self.fresh[marked],
            axes,
            rough=self.rough[marked][rows, axes],
            retried=torch.zeros_like(axes, dtype=torch.bool),
        )
        children = _bisect(self.lower[marked], self.upper[marked], self.pieces[marked], axes, cuts)
        return parents, children


@dataclass(frozen=True)
class _Split:
    """What the children of a split inherit from their parents: estimates, axis errors, the
    ``|Q - Q_k|`` of the parents' own nodes and their roughness bounds along the split axis
    (0 where smooth); and whether the parents are being split for the second time."""

    estimates: torch.Tensor  # (m, B)
    axis_errors: torch.Tensor  # (m, d, B)
    fresh: torch.Tensor  # (m, d, B)
    axes: torch.Tensor  # (m,)
    rough: torch.Tensor  # (m, B)
    retried: torch.Tensor  # (m,) bool

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (self.estimates, self.axis_errors, self.fresh, self.axes, self.rough, self.retried)

    def rescaled(self, factor: torch.Tensor) -> _Split:
        """The same split after the log-space shift grew (estimates times ``factor``)."""
        estimates, axis_errors, fresh, axes, rough, retried = self._fields()
        return _Split(
            estimates * factor, axis_errors * factor, fresh * factor, axes, rough * factor, retried
        )

    def subset(self, rows: torch.Tensor) -> _Split:
        """The parents at ``rows`` (a mask), marked as split for the second time."""
        *kept, _ = (field[rows] for field in self._fields())
        return _Split(*kept, torch.ones_like(self.retried[rows]))

    def join(self, other: _Split) -> _Split:
        return _Split(
            *(torch.cat(pair) for pair in zip(self._fields(), other._fields(), strict=True))
        )

    def hidden(
        self, estimates: torch.Tensor, rough: torch.Tensor, threshold: float
    ) -> torch.Tensor:
        """Parents (m,) whose roughness along the split axis neither child (``rough``: the
        children's bounds (2m, d, B)) sees, while the split's change is at least
        ``threshold`` times the parent's bound: a kink or jump within the children's
        outermost nodes of the midpoint. (A parent that only looked rough, being smooth but
        barely resolved, changes far less.) Parents split a second time are left out."""
        m = len(self.axes)
        rows = torch.arange(m, device=self.axes.device)
        seen = (rough[:m][rows, self.axes] > 0) | (rough[m:][rows, self.axes] > 0)  # (m, B)
        change = (self.estimates - estimates[:m].detach() - estimates[m:].detach()).abs()
        suspect = (self.rough > 0) & ~seen & (change >= threshold * self.rough)
        return suspect.any(dim=1) & ~self.retried

    def children_errors(
        self,
        estimates: torch.Tensor,
        fresh: torch.Tensor,
        rough: torch.Tensor,
        lower: torch.Tensor,
        upper: torch.Tensor,
        edges: torch.Tensor,
    ) -> torch.Tensor:
        """Per-axis errors (2m, d, B) of the children [lefts..., rights...].

        ``|K - G|`` along an axis is the error of the Gauss rule, far above the Kronrod
        rule's own. A split measures better: ``|parent - (left + right)|`` is the parent's
        true error along the split axis (the children being more accurate), so each child
        takes that, times a safety factor, along the split axis — which also covers a kink
        or jump that the parent saw and that hides between a child's outermost node and its
        edge, where both of the child's rules agree (``hidden`` finds those). Along the
        other axes a child keeps the smaller of its own estimate and its parent's,
        unless its own exceeds the parent's own (``fresh``): then the parent's nodes missed
        what the child's see (a jump that hid between the parent's outermost node and its
        edge) and the child takes its own. Along every axis the error is at least the
        roughness bound (``rough``, 0 where the child's values are smooth).
        """
        m = self.estimates.shape[0]
        change = (self.estimates - estimates[:m].detach() - estimates[m:].detach()).abs()
        change = change.repeat(2, 1)  # (2m, B)
        parent_fresh = self.fresh.repeat(2, 1, 1)
        inherited = torch.where(
            fresh <= parent_fresh, torch.minimum(fresh, self.axis_errors.repeat(2, 1, 1)), fresh
        )
        faces = torch.cat([lower, upper], dim=1)[:, :, None]  # (2m, 2d, 1)
        at_edge = (faces == torch.cat([edges, edges])[None]).any(dim=2).any(dim=1)
        factor = torch.where(at_edge, _INHERIT_EDGE, _INHERIT_INTERIOR).to(change.dtype)
        axes = self.axes.repeat(2)
        rows = torch.arange(2 * m, device=axes.device)
        inherited[rows, axes] = factor[:, None] * change
        return torch.maximum(inherited, rough)


# How many times |parent - (left + right)| a child takes as its error along the split axis:
# in the interior, once (the children are more accurate than the parent); at the reference
# domain's edge, more, for endpoint singularities whose error shrinks slowly under bisection
# (x^-0.9 loses 13% a level).
_INHERIT_INTERIOR = 1.0
_INHERIT_EDGE = 8.0


def default_gauss_order(d: int) -> int:
    """The Gauss order n of the product G_n-K_(2n+1) rule for dimension d: G10-K21 in 1-D,
    G7-K15 for d = 2..5 (15^5 = 759,375 points a region), G4-K9 for d = 6 (531,441).

    High orders pay in 5-D: with the split-based error estimates, G7-K15 reached the smooth
    Genz families to 1e-8 in 0.8M to 27M points where G3-K7 needed over 60M.
    """
    if d == 1:
        return 10
    if d <= 5:
        return 7
    return 4
