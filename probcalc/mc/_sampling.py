"""Seeded draws and checked evaluations shared by the Monte Carlo estimators."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.distributions import Distribution

from ..core.errors import NonFiniteError

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
    f: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor, what: str = "f"
) -> tuple[torch.Tensor, torch.Size]:
    """f(samples) as an (m, B) tensor and f's output shape after dim 0; ValueError for a
    wrong leading dimension, NonFiniteError naming the first sample where f is NaN or
    infinite."""
    out = f(samples)
    m = samples.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != m:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{what} must map {m} samples to a tensor of shape ({m},) or ({m}, *batch), got {shape}"
        )
    flat = out.reshape(m, -1)
    bad = ~torch.isfinite(flat)
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        value = float(flat[row][bad[row]][0])
        raise NonFiniteError(
            f"{what} is {value} at the sample {samples[row].detach().tolist()}",
            value=value,
            where=str(samples[row].detach().tolist()),
        )
    return flat, out.shape[1:]
