"""Scale-out benchmark on 1 and 2 processes (gloo): Monte Carlo samples per second, and
PPO's environment steps per second on Pendulum-v1.

Not a test:
    bash .ci/venv python benchmarks/bench_distributed.py
Writes benchmarks/results/distributed.md.

PPO: 100,000 steps of Pendulum-v1 in all (both ranks' steps counted), rl-zoo3's settings
(probcalc.rl.TUNED: 4 envs x 1024 steps, minibatches of 64, 10 epochs), seed 0, one torch
thread per process; the time is the slowest rank's learn(), and the return the mean of 10
deterministic evaluation episodes. Two processes are run three ways: each rank with the
one-process settings (the union's rollout and minibatches twice as large, half as many
updates), each rank with half the environments (the same rollout, minibatches of 128 in
the union), and each rank with half the environments and minibatches of 32 (the one-process
update exactly, split in two).

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
from probcalc.core import distributed

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.md"
N = 10**8


def _square(x: torch.Tensor) -> torch.Tensor:
    return x**2


def _worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        normal = Normal(torch.tensor(0.0), torch.tensor(1.0))
        pc.mc.expectation(_square, normal, 10**6, seed=1)  # warm-up: imports, first calls
        dist.barrier()
        start = time.perf_counter()
        estimate = pc.mc.expectation(_square, normal, N, seed=0)
        elapsed = torch.tensor([time.perf_counter() - start])
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if rank == 0:
            torch.save(
                {
                    "seconds": float(elapsed),
                    "value": float(estimate.value),
                    "stderr": float(estimate.stderr),
                },
                out,
            )
        dist.barrier()  # leave together: gloo aborts a process torn down while a peer works
    finally:
        dist.destroy_process_group()


PPO_STEPS = 100_000
PPO_LAYOUTS = {  # name: (processes, per-rank overrides of the tuned settings)
    "1 process": (1, {}),
    "2 processes, per-rank settings as 1 process": (2, {}),
    "2 processes, 2 envs each (same rollout)": (2, {"n_envs": 2}),
    "2 processes, 2 envs and minibatches of 32 each": (2, {"n_envs": 2, "batch_size": 32}),
    "2 processes, 2 envs and minibatches of 128 each": (2, {"n_envs": 2, "batch_size": 128}),
}


def _ppo(overrides: dict[str, int]) -> dict[str, float]:
    """Train PPO on this rank (in the group if one is initialized); the slowest rank's time."""
    settings = {**pc.rl.tuned("ppo", "Pendulum-v1"), **overrides}
    agent = pc.rl.PPO("Pendulum-v1", seed=0, **settings)
    # the time spent in the ranks' all_reduce calls (gradients, statistics), rank 0's
    spent = {"seconds": 0.0, "calls": 0}
    all_sum = distributed.all_sum

    def timed_all_sum(tensors: list[torch.Tensor], group: object = False) -> list[torch.Tensor]:
        start = time.perf_counter()
        result = all_sum(tensors, group)
        spent["seconds"] += time.perf_counter() - start
        spent["calls"] += group is not False
        return result

    distributed.all_sum = timed_all_sum
    try:
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        agent.learn(PPO_STEPS)
        elapsed = torch.tensor([time.perf_counter() - start])
    finally:
        distributed.all_sum = all_sum
    if dist.is_initialized():
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    mean, _ = pc.rl.evaluate(agent, n_episodes=10, seed=1000)
    return {
        "seconds": float(elapsed),
        "steps": agent.num_timesteps,
        "return": mean,
        "all_reduce_seconds": spent["seconds"],
        "all_reduce_calls": spent["calls"],
    }


def _ppo_worker(rank: int, world: int, store: str, out: str, overrides: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    try:
        result = _ppo(overrides)
        if rank == 0:
            torch.save(result, out)
        dist.barrier()  # leave together: gloo aborts a process torn down while a peer works
    finally:
        dist.destroy_process_group()


def run_ppo(world: int, overrides: dict[str, int]) -> dict[str, float]:
    if world == 1:
        torch.set_num_threads(1)
        return _ppo(overrides)
    folder = tempfile.mkdtemp()
    out = os.path.join(folder, "result.pt")
    mp.spawn(_ppo_worker, args=(world, os.path.join(folder, "store"), out, overrides), nprocs=world)
    return torch.load(out)


def run(world: int) -> dict[str, float]:
    if world == 1:
        torch.set_num_threads(1)
        normal = Normal(torch.tensor(0.0), torch.tensor(1.0))
        pc.mc.expectation(_square, normal, 10**6, seed=1)  # warm-up, as on the ranks
        start = time.perf_counter()
        estimate = pc.mc.expectation(_square, normal, N, seed=0)
        return {
            "seconds": time.perf_counter() - start,
            "value": float(estimate.value),
            "stderr": float(estimate.stderr),
        }
    folder = tempfile.mkdtemp()
    out = os.path.join(folder, "result.pt")
    mp.spawn(_worker, args=(world, os.path.join(folder, "store"), out), nprocs=world)
    return torch.load(out)


def main() -> None:
    one, two = run(1), run(2)
    speedup = one["seconds"] / two["seconds"]
    lines = [
        "# Monte Carlo across processes (torch.distributed, gloo)",
        "",
        f"E[X²], X ~ N(0, 1), n = 10^8, one torch thread per process; {os.cpu_count()} CPU "
        f"cores; Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "| processes | seconds | samples/s | estimate ± stderr |",
        "|---:|---:|---:|---|",
        f"| 1 | {one['seconds']:.2f} | {N / one['seconds']:.3g} | "
        f"{one['value']:.6f} ± {one['stderr']:.1e} |",
        f"| 2 | {two['seconds']:.2f} | {N / two['seconds']:.3g} | "
        f"{two['value']:.6f} ± {two['stderr']:.1e} |",
        "",
        f"Speed-up {speedup:.2f}, scaling efficiency {speedup / 2:.0%}.",
        "",
        "# PPO on Pendulum-v1 across processes",
        "",
        f"{PPO_STEPS:,} environment steps in all, rl-zoo3's settings, seed 0, one torch "
        "thread per process; the return is the mean of 10 deterministic episodes.",
        "",
        "| layout | seconds | steps/s | speed-up | efficiency | in all_reduce | return |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    baseline = None
    for name, (world, overrides) in PPO_LAYOUTS.items():
        result = run_ppo(world, overrides)
        rate = result["steps"] / result["seconds"]
        baseline = baseline or rate
        speed = rate / baseline
        calls = result["all_reduce_calls"]
        seconds = result["all_reduce_seconds"]
        share = f"{seconds:.1f} s, {calls:,} of {seconds / max(calls, 1) * 1e3:.2f} ms"
        share = share if calls else "-"
        lines.append(
            f"| {name} | {result['seconds']:.1f} | {rate:,.0f} | {speed:.2f} | "
            f"{speed / world:.0%} | {share} | {result['return']:.0f} |"
        )
        print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
