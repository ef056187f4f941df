"""Environment steps to the optimal LQR cost: NaturalPG and TRPO against PPO.

Not a test:
    bash .ci/venv python benchmarks/bench_lqr.py [--seeds 3]
Writes benchmarks/results/lqr.md.

A linear policy with fixed exploration (σ = 0.05) from u = 0 on probcalc/LQR-v0 with three
states and two inputs, discount 0.95 and noise 0.05, in two systems: an open-loop stable
chain (A = 0.9 I + 0.1 superdiagonal) and a marginally stable one (a double integrator
beside an integrator). After every update the exact discounted cost of the policy's gain
(``policy_cost``) is compared with the Riccati optimum: the table gives the first step at
which the cost is within 1% of it, the step from which it stays there to the end of the
budget, and the final ratio. PPO uses the settings of its LQR test (8 envs x 128 steps,
lr 5e-3 decayed linearly, 10 epochs of batches of 128, rewards normalized); NaturalPG and
TRPO use the same rollouts and sb3-contrib's defaults (δ = 0.01, 15 CG steps, damping 0.1);
the last row takes Kakade's step 0.5 F⁻¹g instead, decayed linearly like PPO's learning
rate.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from probcalc.envs.lqr import LQREnv

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results" / "lqr.md"
STEPS = 150_000
B = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]]
SYSTEMS = {
    "stable chain": [[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 0.9]],
    "double integrator + integrator": [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
}
COMMON = {
    "policy": "linear",
    "n_envs": 8,
    "n_steps": 128,
    "gamma": 0.95,
    "log_std_init": math.log(0.05),
    "learn_std": False,
    "normalize_rewards": True,
}
ALGORITHMS: dict[str, tuple[type, dict[str, Any]]] = {
    "PPO": (
        pc.rl.PPO,
        {
            "learning_rate": 5e-3,
            "lr_schedule": "linear",
            "n_epochs": 10,
            "batch_size": 128,
            "max_grad_norm": 10.0,
        },
    ),
    "NaturalPG": (pc.rl.NaturalPG, {}),
    "TRPO": (pc.rl.TRPO, {}),
    "NaturalPG, step 0.5 F⁻¹g decayed": (
        pc.rl.NaturalPG,
        {"step_size": 0.5, "lr_schedule": "linear"},
    ),
}


def run(system: list[list[float]], algorithm: str, seed: int) -> dict[str, Any]:
    env_kwargs = {"A": system, "B": B, "gamma": 0.95, "noise_std": 0.05}
    env = LQREnv(**env_kwargs)
    best = env.policy_cost(env.optimal_gain())
    make, options = ALGORITHMS[algorithm]
    agent = make("probcalc/LQR-v0", env_kwargs=env_kwargs, seed=seed, **COMMON, **options)
    with torch.no_grad():
        agent.policy.mean[0].weight.zero_()
        agent.policy.mean[0].bias.zero_()
    trace: list[tuple[int, float]] = []

    def measure(agent: pc.rl.OnPolicyAgent, row: dict) -> None:
        gain = -env.action_scale * agent.policy.mean[0].weight.detach().double().numpy()
        trace.append((agent.num_timesteps, env.policy_cost(gain) / best))

    start = time.perf_counter()
    agent.learn(STEPS, callback=measure)
    wall = time.perf_counter() - start
    first = next((step for step, ratio in trace if ratio <= 1.01), None)
    stays = next(
        (trace[i][0] for i in range(len(trace)) if all(ratio <= 1.01 for _, ratio in trace[i:])),
        None,
    )
    return {"first": first, "stays": stays, "final": trace[-1][1], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Steps to within 1% of the optimal LQR cost (3 states, 2 inputs)",
        "",
        f"{STEPS:,}-step budget, seeds 0..{args.seeds - 1}; '-' = not reached. "
        "Settings in benchmarks/bench_lqr.py.",
        "",
        "| system | algorithm | first within 1% | stays within 1% from | final cost ratio "
        "| wall time per run |",
        "|---|---|---|---|---|---:|",
    ]
    for name, system in SYSTEMS.items():
        for algorithm in ALGORITHMS:
            runs = [run(system, algorithm, seed) for seed in range(args.seeds)]

            def show(values: list[Any]) -> str:
                return ", ".join("-" if v is None else f"{v:,}" for v in values)

            finals = ", ".join(f"{r['final']:.4f}" for r in runs)
            lines.append(
                f"| {name} | {algorithm} | {show([r['first'] for r in runs])} | "
                f"{show([r['stays'] for r in runs])} | {finals} | "
                f"{np.mean([r['wall'] for r in runs]):.0f} s |"
            )
            print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
