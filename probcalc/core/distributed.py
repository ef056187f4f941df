"""torch.distributed helpers: which process this is, per-rank seeds, and exact combination
of per-rank sufficient statistics.

probcalc uses an initialized default process group (torchrun, or
``torch.distributed.init_process_group``) or an explicit ``group``; without one every
function here describes a single process, so the same code runs either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "active_group",
    "agree",
    "agreed",
    "all_sum",
    "any_across",
    "broadcast_module",
    "gather_moments",
    "gather_objects",
    "gather_rows",
    "rank",
    "rank_seed",
    "share",
    "sum_across",
    "world_size",
]

Group = Any  # a torch.distributed ProcessGroup, or None for the default group


def active_group(group: Group | bool = None) -> Group | bool:
    """The group to combine over: ``group`` if given, the default group when torch.distributed
    is initialized (and has more than one process), else False (a single process).
    ``group=False`` asks for a local computation even under an initialized group."""
    if group is not None:
        return group
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return None  # torch's own name for the default group
    return False


def rank(group: Group | bool = False) -> int:
    """This process's rank in ``group`` (0 for a single process)."""
    return 0 if group is False else dist.get_rank(group)


def world_size(group: Group | bool = False) -> int:
    """The number of processes in ``group`` (1 for a single process)."""
    return 1 if group is False else dist.get_world_size(group)


def share(n: int, group: Group | bool = False) -> tuple[int, int]:
    """(offset, count) of this rank's part of n items split as evenly as possible, the
    first n mod W ranks taking one more: consecutive blocks in rank order."""
    size, me = world_size(group), rank(group)
    base, extra = divmod(n, size)
    count = base + (1 if me < extra else 0)
    offset = me * base + min(me, extra)
    return offset, count


def rank_seed(seed: int | None, group: Group | bool = False) -> int | None:
    """An independent seed for this rank, derived from the user's seed with
    numpy.random.SeedSequence.spawn (None stays None: each rank draws fresh entropy).
    A single process keeps the user's seed, so one rank reproduces a plain run."""
    if seed is None or group is False:
        return seed
    child = np.random.SeedSequence(seed).spawn(world_size(group))[rank(group)]
    return int(child.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def agree(error: BaseException | None, group: Group | bool = False) -> None:
    """Before a collective: every rank learns whether any rank failed, so none waits for a
    partner that has raised. The failing rank re-raises its own error; the others raise a
    RuntimeError naming a failed rank (the highest-numbered one, if several failed)."""
    if group is False:
        if error is not None:
            raise error
        return
    flag = torch.tensor([0 if error is None else rank(group) + 1], dtype=torch.long)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if error is not None:
        raise error
    if int(flag) > 0:
        raise RuntimeError(f"rank {int(flag) - 1} of the process group failed; see its error")


@contextlib.contextmanager
def agreed(group: Group | bool = False) -> Iterator[None]:
    """A block that may fail on some ranks only: on leaving it, every rank learns whether
    any rank failed (:func:`agree`), so none goes on to a collective its partners will not
    make. ``with agreed(group): ...`` on every rank; in one process errors pass through."""
    error = None
    try:
        yield
    except Exception as caught:
        error = caught
    agree(error, group)


def sum_across(tensor: torch.Tensor, group: Group | bool = False) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks (itself for a single process), keeping its
    autograd graph (torch's functional collectives differentiate through all_reduce).

    Gradients follow DistributedDataParallel's convention: each rank's backward gives
    W times its own share, so averaging the ranks' ``.grad`` (all_reduce, then divide by
    the world size W) gives the gradient of the combined value.
    """
    if group is False:
        return tensor
    import torch.distributed._functional_collectives as collectives

    reduced = collectives.all_reduce(tensor, "sum", dist.group.WORLD if group is None else group)
    return collectives.wait_tensor(reduced)


def all_sum(tensors: list[torch.Tensor], group: Group | bool = False) -> list[torch.Tensor]:
    """The sums over the ranks of a list of tensors, in one all_reduce of a flat buffer
    (one message, as DistributedDataParallel's gradient buckets); no autograd graph.
    A single process gets its tensors back unchanged."""
    if group is False or not tensors:
        return tensors
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    dist.all_reduce(flat, group=group)
    return [
        part.view_as(t)
        for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


def any_across(flag: bool, group: Group | bool = False) -> bool:
    """Whether ``flag`` is true on any rank (so that every rank takes the same branch)."""
    if group is False:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.long)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value)


def broadcast_module(module: torch.nn.Module, group: Group | bool = False) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (what
    DistributedDataParallel does when it wraps a module)."""
    if group is False:
        return
    source = dist.get_global_rank(group, 0) if group is not None else 0
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, source, group=group)


def gather_rows(row: torch.Tensor, group: Group | bool = False) -> torch.Tensor:
    """Every rank's 1-D ``row`` (the same length on every rank), stacked in rank order:
    (world size, length)."""
    if group is False:
        return row[None]
    parts = [torch.empty_like(row) for _ in range(world_size(group))]
    dist.all_gather(parts, row.contiguous(), group=group)
    return torch.stack(parts)


def gather_objects(
    item: Any, group: Group | bool = False, to_first: bool = False
) -> list[Any] | None:
    """Every rank's picklable ``item``, in rank order (torch's all_gather_object); with
    ``to_first`` only rank 0 receives them (gather_object) and the others get None."""
    if group is False:
        return [item]
    items: list[Any] = [None] * world_size(group)
    if not to_first:
        dist.all_gather_object(items, item, group=group)
        return items
    first = dist.get_global_rank(group, 0) if group is not None else 0
    dist.gather_object(item, items if rank(group) == 0 else None, dst=first, group=group)
    return items if rank(group) == 0 else None


def gather_moments(
    count: int, mean: torch.Tensor, m2: torch.Tensor, group: Group | bool = False
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Combine (count, mean, M2 = Σ(x - mean)²) of every rank by Chan et al.'s parallel
    rule, merged in rank order so every rank gets the same result, bit for bit."""
    if group is False:
        return count, mean, m2
    # float64 whatever the statistics' dtype: counts past 2^24 are exact there; gathered on
    # the CPU (gloo), returned on the statistics' device
    device = mean.device
    packed = torch.cat(
        [
            torch.tensor([float(count)], dtype=torch.float64),
            mean.detach().reshape(-1).double().cpu(),
            m2.detach().reshape(-1).double().cpu(),
        ]
    )
    parts = gather_rows(packed, group)
    size = mean.numel()
    total_count = 0
    total_mean = torch.zeros(mean.shape, dtype=torch.float64)
    total_m2 = torch.zeros(m2.shape, dtype=torch.float64)
    for part in parts:
        n_b = int(part[0])
        if n_b == 0:
            continue
        mean_b = part[1 : 1 + size].reshape(mean.shape)
        m2_b = part[1 + size :].reshape(m2.shape)
        if total_count == 0:
            total_count, total_mean, total_m2 = n_b, mean_b, m2_b
            continue
        merged = total_count + n_b
        delta = mean_b - total_mean
        total_mean = total_mean + delta * n_b / merged
        total_m2 = total_m2 + m2_b + delta**2 * total_count * n_b / merged
        total_count = merged
    return total_count, total_mean.to(mean.dtype).to(device), total_m2.to(m2.dtype).to(device)
