"""Seeded draws and checked evaluations shared by the Monte Carlo estimators.

Seeds follow :mod:`probcalc.core.random`: an int reproduces, a torch.Generator is drawn
from, None is fresh entropy, and torch's global random state is left where it was.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch.distributions import Distribution

from ..core.distributed import Group, agreed, rank_seed, share, world_size
from ..core.evaluation import evaluate_batch
from ..core.random import Seed, integer_seed, seeded


def check_n(n: int, minimum: int = 2, name: str = "n_samples") -> int:
    """``n`` as an int; ValueError unless it is an integer >= minimum (a standard error
    needs two samples). An integral float (32.0) and numpy integers count as integers,
    booleans do not.

    Args:
        n: the count.
        minimum: the least count allowed.
        name: how messages name the argument.

    Returns:
        The count as an int.

    Raises:
        ValueError: anything else.
    """
    if isinstance(n, bool):
        ok = False
    elif isinstance(n, numbers.Integral):
        ok = True
    else:
        ok = isinstance(n, numbers.Real) and math.isfinite(n) and float(n).is_integer()
    if not ok or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_distribution(dist: object, name: str = "dist") -> Distribution:
    """``dist`` itself when it is a torch Distribution; TypeError naming ``name`` otherwise."""
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"{name} must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist


def draw(dist: Distribution, count: int) -> torch.Tensor:
    """``count`` samples, reparameterized (differentiable) where the distribution allows."""
    return dist.rsample((count,)) if dist.has_rsample else dist.sample((count,))


def evaluate(
    f: Callable[[torch.Tensor], torch.Tensor],
    samples: torch.Tensor,
    what: str = "f",
    allow_minus_inf: bool = False,
) -> tuple[torch.Tensor, torch.Size]:
    """f(samples) as an (m, B) tensor and f's output shape after dim 0; see
    :func:`probcalc.core.evaluation.evaluate_batch`."""
    return evaluate_batch(
        f, samples, what=what, point_name="sample", allow_minus_inf=allow_minus_inf
    )


def common_seed(seed: Seed, group: Group) -> int:
    """One int seed on every rank of ``group``: rank 0's (the user's int, a draw from its
    Generator, or fresh entropy for seed=None), broadcast to the others."""
    import torch.distributed as torch_dist

    value = integer_seed(seed) % 2**63  # broadcast as an int64
    drawn = torch.tensor([value], dtype=torch.long)
    source = 0 if group is None else torch_dist.get_global_rank(group, 0)
    torch_dist.broadcast(drawn, src=source, group=group)
    return int(drawn)


def _device(dist: Distribution) -> torch.device:
    """The device of a distribution's parameters (its first tensor attribute, looking into
    base distributions: a TransformedDistribution has no ``mean``); the CPU if none."""
    for value in vars(dist).values():
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, Distribution):
            return _device(value)
    return torch.device("cpu")


def local_draws(
    dist: Distribution,
    n: int,
    seed: Seed,
    group: Group | bool,
    compute: Callable[[torch.Tensor], torch.Tensor],
    *,
    reparameterized: bool = False,
    per_rank: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of n draws from ``dist`` and ``compute`` at them.

    One process (``group`` False) draws all n with ``seed``; across processes each rank
    draws its share with its own stream (``rank_seed`` of the common seed). A failure on
    any rank raises on every rank (:func:`probcalc.core.distributed.agreed`).

    Raises:
        ValueError: across processes, fewer than ``per_rank`` draws for some rank.
    """
    device = _device(dist)
    if group is not False:
        if n < per_rank * world_size(group):
            raise ValueError(
                f"n_samples = {n} is too small to split over {world_size(group)} ranks "
                f"(at least {per_rank} draws each)"
            )
        seed = rank_seed(common_seed(seed, group), group)
    _, count = share(n, group)
    samples, values = None, None
    with agreed(group):  # a failure raises on every rank
        with seeded(seed, device):
            samples = dist.rsample((count,)) if reparameterized else dist.sample((count,))
        values = compute(samples)
    return samples, values
