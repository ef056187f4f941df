"""Seeded draws and checked evaluations shared by the Monte Carlo estimators."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.distributions import Distribution

from ..core.evaluation import evaluate_batch

Seed = int | torch.Generator | None


def check_n(n: int, minimum: int = 2) -> int:
    """ValueError unless n is an integer >= minimum (a standard error needs two samples)."""
    if isinstance(n, bool) or int(n) != n or n < minimum:
        raise ValueError(f"n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_distribution(dist: object) -> Distribution:
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist


def integer_seed(seed: Seed) -> int | None:
    """An int seed: the given one, one drawn from a Generator (advancing it), or None."""
    if seed is None or isinstance(seed, int):
        return seed
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed))
    raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")


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
