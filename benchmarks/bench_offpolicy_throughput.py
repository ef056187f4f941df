"""Training throughput of probcalc's SAC and TD3 against Stable-Baselines3's, measured in
alternating bursts so that both libraries see the same machine conditions.

Not a test; needs the bench extra (and the mujoco extra for HalfCheetah-v5):
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_offpolicy_throughput.py \
        [--bursts 6] [--burst-steps 1000] [--tasks sac:Pendulum-v1 td3:Pendulum-v1]
Writes benchmarks/results/offpolicy_throughput.md.

Each library's agent is built with rl-zoo3's settings for the task (the same tables as
benchmarks/bench_offpolicy.py) but learning_starts equal to one burst, and trained one
burst at a time, the libraries taking turns (probcalc first in even bursts, Stable-
Baselines3 first in odd ones). The first burst (uniformly random actions) is left out;
every later one is a burst of one update per environment step. Reported: each library's
median steps per second over the bursts and the median of the per-burst ratios, one torch
thread, on the CPU. A slow drift of the machine's load affects both sides of a ratio
alike, which separate whole runs cannot promise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import stable_baselines3
import torch
from bench_offpolicy import machine, probcalc_settings, sb3_model

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results"


def _agents(algorithm: str, env_id: str, burst: int) -> tuple[Any, Any]:
    """probcalc's agent and Stable-Baselines3's model, rl-zoo3's settings, learning after
    one burst."""
    settings = {**probcalc_settings(algorithm, env_id, quick=False), "learning_starts": burst}
    agent = getattr(pc.rl, algorithm.upper())(env_id, seed=0, **settings)
    model = sb3_model(algorithm, env_id, seed=0, quick=False)
    model.learning_starts = burst
    return agent, model


def measure(algorithm: str, env_id: str, bursts: int, burst: int) -> dict[str, Any]:
    """Steps per second of each burst of each library (the first burst left out)."""
    agent, model = _agents(algorithm, env_id, burst)
    rates: dict[str, list[float]] = {"probcalc": [], "sb3": []}
    for index in range(bursts + 1):
        order = ["probcalc", "sb3"] if index % 2 == 0 else ["sb3", "probcalc"]
        for library in order:
            start = time.perf_counter()
            if library == "probcalc":
                agent.learn(burst)
            else:
                model.learn(burst, reset_num_timesteps=False)
            if index > 0:
                rates[library].append(burst / (time.perf_counter() - start))
    ratios = [p / s for p, s in zip(rates["probcalc"], rates["sb3"], strict=True)]
    return {
        "algorithm": algorithm,
        "env": env_id,
        "probcalc": statistics.median(rates["probcalc"]),
        "sb3": statistics.median(rates["sb3"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--burst-steps", type=int, default=1_000)
    parser.add_argument(
        "--tasks", nargs="+", default=["sac:Pendulum-v1", "td3:Pendulum-v1"], metavar="ALGO:ENV"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "offpolicy_throughput.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        algorithm, env_id = task.split(":", 1)
        result = measure(algorithm, env_id, args.bursts, args.burst_steps)
        rows.append(result)
        print(
            f"{algorithm.upper()} {env_id}: probcalc {result['probcalc']:.1f} steps/s, "
            f"Stable-Baselines3 {result['sb3']:.1f} steps/s, ratio {result['ratio']:.2f} "
            f"(per burst {', '.join(f'{r:.2f}' for r in result['ratios'])})",
            flush=True,
        )
    info = machine()
    lines = [
        "# Off-policy training throughput, alternating bursts",
        "",
        f"{info.get('cpu', platform.processor())}; torch {torch.__version__}, "
        f"Stable-Baselines3 {stable_baselines3.__version__}, one thread; "
        f"{args.bursts} bursts of {args.burst_steps:,} steps after one of random actions.",
        "",
        "| algorithm | task | probcalc steps/s | Stable-Baselines3 steps/s | median ratio | "
        "per-burst ratios |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algorithm'].upper()} | {r['env']} | {r['probcalc']:.1f} | {r['sb3']:.1f} | "
            f"{r['ratio']:.2f} | {', '.join(f'{x:.2f}' for x in r['ratios'])} |"
        )
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
