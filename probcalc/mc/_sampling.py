"""Seeded draws and checked evaluations shared by the Monte Carlo estimators."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator

import torch
from torch.distributions import Distribution

from ..core import random
from ..core.distributed import Group, agreed, rank_seed, share, world_size
from ..core.evaluation import evaluate_batch

Seed = int | torch.Generator | None


def check_n(n: int, minimum: int = 2, name: str = "n") -> int:
    """ValueError unless n is an integer >= minimum (a standard error needs two samples);
    an integral float (32.0) and numpy integers count as integers, booleans do not."""
    if isinstance(n, bool):
        ok = False
    elif isinstance(n, numbers.Integral):
        ok = True
    else:
        ok = isinstance(n, numbers.Real) and math.isfinite(n) and float(n).is_integer()
    if not ok or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_callable(f: object, name: str) -> None:
    """TypeError naming ``name`` when ``f`` is not callable."""
    if not callable(f):
        raise TypeError(f"{name} must be a function, got {type(f).__name__} {f!r:.60}")


def check_distribution(dist: object, name: str = "dist") -> Distribution:
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"{name} must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist


def check_seed(seed: object) -> None:
    """TypeError or ValueError unless ``seed`` follows probcalc's seed convention
    (:func:`probcalc.core.random.check_seed`: a non-negative int, a torch.Generator or
    None) and, as an int, is one torch can seed with (below 2^64)."""
    random.check_seed(seed)
    if isinstance(seed, int) and seed >= 2**64:
        raise ValueError(f"seed must be below 2^64 to seed torch, got {seed}")


def integer_seed(seed: Seed) -> int | None:
    """An int seed: the given one, one drawn from a Generator (advancing it), or None."""
    check_seed(seed)
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed))
    return None if seed is None else int(seed)


@contextlib.contextmanager
def seeded(seed: Seed, device: torch.device) -> Iterator[None]:
    """Draws inside use ``seed`` without touching the caller's global random state.

    torch.distributions draw from the global generator, so a seed forks it
    (torch.random.fork_rng) and restores it on exit. With ``seed=None`` the global
    generator is used as is.
    """
    value = integer_seed(seed)
    if value is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(value)
        yield


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
    Generator, or a fresh draw for seed=None), broadcast to the others."""
    import torch.distributed as torch_dist

    value = integer_seed(seed)
    if value is None:
        value = int(torch.randint(0, 2**62, (1,)))
    drawn = torch.tensor([value], dtype=torch.long)
    source = 0 if group is None else torch_dist.get_global_rank(group, 0)
    torch_dist.broadcast(drawn, src=source, group=group)
    return int(drawn)


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
    device = dist.mean.device if dist.mean.numel() else torch.device("cpu")
    if group is not False:
        if n < per_rank * world_size(group):
            raise ValueError(f"n = {n} is too small to split over {world_size(group)} ranks "
                             f"(at least {per_rank} draws each)")  # fmt: skip
        seed = rank_seed(common_seed(seed, group), group)
    _, count = share(n, group)
    samples, values = None, None
    with agreed(group):  # a failure raises on every rank
        with seeded(seed, device):
            samples = dist.rsample((count,)) if reparameterized else dist.sample((count,))
        values = compute(samples)
    return samples, values
