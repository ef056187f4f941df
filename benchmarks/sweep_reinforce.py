"""The sweep behind REINFORCE's tuned settings (rl-zoo3 has none for REINFORCE).

Not a test:
    PROBCALC_EXTRAS=dev,bench,mujoco bash .ci/venv python benchmarks/sweep_reinforce.py \
        [--tasks Pendulum-v1 ...]
Writes benchmarks/results/reinforce_sweep.md (and .json, one row per trial).

A small grid per task, seed 0, one torch thread: the learning rate, and gSDE or not. Each
trial trains for the task's budget and is scored by 10 deterministic episodes (seeds 1000
to 1009, normalization frozen). The best trial's settings are probcalc.rl.TUNED's entry.
The rollout is long enough that the return-to-go it sees covers 1/(1 - gamma) steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rl_scoring import episode_returns

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results"

# task: (fixed settings, budget, grid of learning rates)
GRID: dict[str, tuple[dict[str, Any], int, tuple[float, ...]]] = {
    "Pendulum-v1": (
        {"n_envs": 16, "n_steps": 32, "gamma": 0.9},
        1_000_000,
        (1e-3, 3e-3, 1e-2),
    ),
    "MountainCarContinuous-v0": (
        {"n_envs": 16, "n_steps": 256, "gamma": 0.99, "normalize_observations": True},
        100_000,
        (1e-3, 1e-2),
    ),
    **{
        task: (
            {
                "n_envs": 8,
                "n_steps": 128,
                "gamma": 0.99,
                "normalize_observations": True,
                "normalize_rewards": True,
            },
            500_000,
            (1e-3, 3e-3),
        )
        for task in ("HalfCheetah-v5", "Hopper-v5")
    },
}


def trial(task: str, settings: dict[str, Any], steps: int) -> dict[str, Any]:
    agent = pc.rl.REINFORCE(task, seed=0, **settings)
    start = time.perf_counter()
    agent.learn(steps)
    wall = time.perf_counter() - start
    returns = episode_returns(task, lambda obs: agent.predict(obs))
    return {
        "task": task,
        "settings": settings,
        "steps": steps,
        "mean_return": float(np.mean(returns)),
        "returns": returns,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="*", default=list(GRID))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        fixed, steps, rates = GRID[task]
        for rate, use_sde in itertools.product(rates, (False, True)):
            settings = {**fixed, "learning_rate": rate, "use_sde": use_sde}
            row = trial(task, settings, steps)
            rows.append(row)
            print(task, rate, use_sde, round(row["mean_return"], 1), round(row["wall"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reinforce_sweep.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# REINFORCE: the sweep behind its tuned settings",
        "",
        "Seed 0, one torch thread; return: mean of 10 deterministic episodes. Fixed settings "
        "and the grid: benchmarks/sweep_reinforce.py.",
        "",
        "| task | steps | learning rate | gSDE | return | wall time |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        settings = row["settings"]
        lines.append(
            f"| {row['task']} | {row['steps']:,} | {settings['learning_rate']:g} | "
            f"{'yes' if settings['use_sde'] else 'no'} | {row['mean_return']:.1f} | "
            f"{row['wall']:.0f} s |"
        )
    (RESULTS / "reinforce_sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
