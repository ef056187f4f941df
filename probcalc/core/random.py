"""Seeds: one convention for every probcalc function and class that draws.

``seed`` is an ``int`` (the same numbers on every call), a ``torch.Generator`` (drawn from
and advanced), or ``None`` (fresh entropy). probcalc draws from its own generators, or
forks torch's global one for torch.distributions' ``sample`` and restores it afterwards,
so the caller's random state never moves.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["Seed", "check_seed", "generator", "integer_seed", "seeded"]

Seed = int | torch.Generator | None

_SEED_LIMIT = 2**64  # torch.manual_seed takes a 64-bit seed


def check_seed(seed: object, name: str = "seed") -> Seed:
    """``seed`` itself when it is an int (a numpy integer included), a torch.Generator or
    None.

    Args:
        seed: the value to check.
        name: how messages name the argument.

    Returns:
        The seed, a numpy integer as a Python int.

    Raises:
        TypeError: anything else (a bool, a float, a numpy Generator...).
        ValueError: a negative int, or one of 2^64 or more (torch seeds with 64 bits).
    """
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        value = operator.index(seed)
        if not 0 <= value < _SEED_LIMIT:
            raise ValueError(
                f"{name} must be a non-negative int below 2^64 (torch seeds with 64 bits), "
                f"got {value}"
            )
        return value
    raise TypeError(
        f"{name} must be an int, a torch.Generator or None (fresh entropy), "
        f"got {type(seed).__name__} {seed!r}"
    )


def integer_seed(seed: Seed, name: str = "seed") -> int:
    """An int seed: the given one, one drawn from a Generator (advancing it), or a fresh
    one from the operating system's entropy (None).

    Args:
        seed: an int, a torch.Generator or None.
        name: how messages name the argument.

    Returns:
        A non-negative int below 2^64 (below 2^62 when drawn).

    Raises:
        TypeError: a seed of another type.
        ValueError: a negative int, or one of 2^64 or more.
    """
    seed = check_seed(seed, name)
    if isinstance(seed, int):
        return seed
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed, device=seed.device))
    return int(torch.Generator().seed() % 2**62)


def generator(
    seed: Seed, device: torch.device | str = "cpu", name: str = "seed"
) -> torch.Generator:
    """A torch.Generator on ``device``: the given one (if it lives on that device), one
    seeded with the int, or one seeded from fresh entropy (None).

    Args:
        seed: an int, a torch.Generator or None.
        device: where the draws are made.
        name: how messages name the argument.

    Returns:
        The Generator to draw from.

    Raises:
        TypeError: a seed of another type.
        ValueError: a negative int or one of 2^64 or more, or a Generator on another
            device.
    """
    seed = check_seed(seed, name)
    device = torch.device(device)
    if isinstance(seed, torch.Generator):
        if seed.device.type != device.type:
            raise ValueError(
                f"{name} is a torch.Generator on {seed.device}, but the draws are made on "
                f"{device}: pass a Generator on {device} or an int"
            )
        return seed
    made = torch.Generator(device=device)
    if seed is None:
        made.seed()
    else:
        made.manual_seed(seed)
    return made


@contextlib.contextmanager
def seeded(seed: Seed, device: torch.device | str = "cpu", name: str = "seed") -> Iterator[None]:
    """Draws from torch's global generator inside this block (torch.distributions'
    ``sample``) use ``seed``; the caller's global random state is restored on exit, also
    for ``seed=None`` (fresh entropy).

    Args:
        seed: an int, a torch.Generator (one int is drawn from it) or None.
        device: the device whose generator the draws use (CUDA's is forked too).
        name: how messages name the argument.

    Yields:
        Nothing; the block runs with the seeded global generator.

    Raises:
        TypeError: a seed of another type.
        ValueError: a negative int, or one of 2^64 or more.
    """
    value = integer_seed(seed, name)
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # only the generators that fork_rng restores: torch.manual_seed would also reseed
        # every CUDA device's, and leave them moved
        torch.default_generator.manual_seed(value)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(value)
        yield
