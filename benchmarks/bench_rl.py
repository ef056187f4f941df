"""Policy-gradient benchmark: probcalc's PPO against Stable-Baselines3's PPO, one run.

Not a test:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_rl.py [--seeds 3]
Writes benchmarks/results/rl.md and benchmarks/results/rl_pendulum.png.

Pendulum-v1, 100,000 steps, the rl-zoo3 settings of issue 7 for both libraries: 4 envs,
n_steps 1024, batch 64, gamma 0.9, gae_lambda 0.95, 10 epochs, learning rate 1e-3, clip 0.2,
no entropy bonus, 64x64 tanh MLPs for the policy and the critic, state-independent log-std
starting at 0 (Stable-Baselines3's MlpPolicy defaults; rl-zoo3's gSDE is left out on both
sides). Seeds 0, 1, 2 each. Both run on the CPU with one torch thread, one after the other,
on this machine. Each trained policy is scored by the same code: the mean undiscounted return
of 10 deterministic episodes (seeds 1000 to 1009). Steps per second is the environment
steps over the wall time of learn(), rollouts and updates included.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium
import matplotlib
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import probcalc as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "Pendulum-v1"
STEPS = 100_000
SETTINGS = {"n_steps": 1024, "batch_size": 64, "gamma": 0.9, "gae_lambda": 0.95,
            "n_epochs": 10, "learning_rate": 1e-3, "clip_range": 0.2, "ent_coef": 0.0}  # fmt: skip
N_ENVS = 4
EVAL_SEEDS = range(1000, 1010)


def score(predict: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean return of deterministic episodes, the same code for both libraries."""
    env = gymnasium.make(ENV)
    returns = []
    for seed in EVAL_SEEDS:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(predict(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


class EpisodeLog(BaseCallback):
    """Stable-Baselines3 callback that keeps (step, return) of every finished episode."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def run_probcalc(seed: int) -> dict[str, object]:
    agent = pc.rl.PPO(ENV, n_envs=N_ENVS, seed=seed, **SETTINGS)
    episodes: list[tuple[int, float]] = []

    def keep(agent: pc.rl.PPO, row: dict) -> None:
        episodes.extend((step, value) for step, value, _ in agent.finished_episodes)

    start = time.perf_counter()
    agent.learn(STEPS, callback=keep)
    wall = time.perf_counter() - start
    value = score(lambda obs: agent.predict(obs[None])[0])
    return {"return": value, "steps_per_second": agent.num_timesteps / wall,
            "steps": agent.num_timesteps, "episodes": episodes}  # fmt: skip


def run_sb3(seed: int) -> dict[str, object]:
    env = make_vec_env(ENV, n_envs=N_ENVS, seed=seed)
    model = stable_baselines3.PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                                  **SETTINGS)  # fmt: skip
    log = EpisodeLog()
    start = time.perf_counter()
    model.learn(STEPS, callback=log)
    wall = time.perf_counter() - start
    value = score(lambda obs: model.predict(obs, deterministic=True)[0])
    return {"return": value, "steps_per_second": model.num_timesteps / wall,
            "steps": model.num_timesteps, "episodes": log.episodes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict[str, object]]] = {"probcalc PPO": [], "Stable-Baselines3 PPO": []}
    for seed in range(args.seeds):
        for name, run in (("probcalc PPO", run_probcalc), ("Stable-Baselines3 PPO", run_sb3)):
            result = run(seed)
            results[name].append(result)
            print(
                f"{name:22s} seed {seed}: return {result['return']:8.1f}, "
                f"{result['steps_per_second']:6.0f} steps/s",
                flush=True,
            )

    lines = [
        "# Policy gradients: PPO on Pendulum-v1, probcalc vs Stable-Baselines3",
        "",
        f"{STEPS:,} steps, {N_ENVS} envs, {SETTINGS};",
        f"seeds 0..{args.seeds - 1}; one torch thread;",
        "evaluation: mean return of 10 deterministic episodes.",
        f"Python {platform.python_version()},",
        f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, "
        f"gymnasium {gymnasium.__version__}, {platform.processor() or platform.machine()}.",
        "",
        "| library | returns per seed | mean return | steps/s per seed | mean steps/s |",
        "|---|---|---:|---|---:|",
    ]
    for name, runs in results.items():
        returns = [r["return"] for r in runs]
        speeds = [r["steps_per_second"] for r in runs]
        lines.append(f"| {name} | {', '.join(f'{v:.0f}' for v in returns)} | "
                     f"{np.mean(returns):.0f} | {', '.join(f'{v:.0f}' for v in speeds)} | "
                     f"{np.mean(speeds):.0f} |")  # fmt: skip
    ours = np.mean([r["steps_per_second"] for r in results["probcalc PPO"]])
    theirs = np.mean([r["steps_per_second"] for r in results["Stable-Baselines3 PPO"]])
    lines += ["", f"probcalc's steps per second: {ours / theirs:.2f}x Stable-Baselines3's."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    figure, axis = plt.subplots(figsize=(7, 4))
    for (name, runs), color in zip(results.items(), ("C0", "C1"), strict=True):
        for index, run in enumerate(runs):
            steps, values = np.array(run["episodes"]).T
            window = 20
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1 :], smooth, color=color, alpha=0.8,
                      label=name if index == 0 else None)  # fmt: skip
    axis.set_xlabel("environment steps")
    axis.set_ylabel("episode return (mean of 20)")
    axis.set_title("PPO on Pendulum-v1, rl-zoo3 settings, 3 seeds each")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "rl_pendulum.png", dpi=110)


if __name__ == "__main__":
    main()
