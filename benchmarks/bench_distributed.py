"""Scale-out benchmark: Monte Carlo samples per second on 1 and 2 processes (gloo).

Not a test:
    bash .ci/venv python benchmarks/bench_distributed.py
Writes benchmarks/results/distributed.md.

E[X²] under N(0, 1) by plain Monte Carlo with n = 10^8 samples in batches of 65,536, one
torch thread per process; the time is the slowest rank's wall time of the call, the group
already initialized (torch.multiprocessing.spawn, a file store) and a first call of 10^6
samples made (the first call across processes imports torch's functional collectives,
about 1.4 s once). Scaling efficiency is the
speed-up divided by the number of processes.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributions import Normal

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.md"
N = 10**8


def _square(x: torch.Tensor) -> torch.Tensor:
    return x**2


def _worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))  # fmt: skip
    try:
        normal = Normal(torch.tensor(0.0), torch.tensor(1.0))
        pc.mc.expectation(_square, normal, 10**6, seed=1)  # warm-up: imports, first calls
        dist.barrier()
        start = time.perf_counter()
        estimate = pc.mc.expectation(_square, normal, N, seed=0)
        elapsed = torch.tensor([time.perf_counter() - start])
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if rank == 0:
            torch.save({"seconds": float(elapsed), "value": float(estimate.value),
                        "stderr": float(estimate.stderr)}, out)  # fmt: skip
    finally:
        dist.destroy_process_group()


def run(world: int) -> dict[str, float]:
    if world == 1:
        torch.set_num_threads(1)
        normal = Normal(torch.tensor(0.0), torch.tensor(1.0))
        pc.mc.expectation(_square, normal, 10**6, seed=1)  # warm-up, as on the ranks
        start = time.perf_counter()
        estimate = pc.mc.expectation(_square, normal, N, seed=0)
        return {"seconds": time.perf_counter() - start, "value": float(estimate.value),
                "stderr": float(estimate.stderr)}  # fmt: skip
    folder = tempfile.mkdtemp()
    out = os.path.join(folder, "result.pt")
    mp.spawn(_worker, args=(world, os.path.join(folder, "store"), out), nprocs=world)
    return torch.load(out)


def main() -> None:
    one, two = run(1), run(2)
    speedup = one["seconds"] / two["seconds"]
    lines = [
        "# Monte Carlo across processes (torch.distributed, gloo)", "",
        f"E[X²], X ~ N(0, 1), n = 10^8, one torch thread per process; {os.cpu_count()} CPU "
        f"cores; Python {platform.python_version()}, torch {torch.__version__}.", "",
        "| processes | seconds | samples/s | estimate ± stderr |", "|---:|---:|---:|---|",
        f"| 1 | {one['seconds']:.2f} | {N / one['seconds']:.3g} | "
        f"{one['value']:.6f} ± {one['stderr']:.1e} |",
        f"| 2 | {two['seconds']:.2f} | {N / two['seconds']:.3g} | "
        f"{two['value']:.6f} ± {two['stderr']:.1e} |", "",
        f"Speed-up {speedup:.2f}, scaling efficiency {speedup / 2:.0%}.",
    ]  # fmt: skip
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
