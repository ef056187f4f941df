"""Time to a solved task: probcalc against Stable-Baselines3 and sb3-contrib, side by side.

Not a test:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_time_to_score.py \
        [--seeds 0 1 2] [--pairs pendulum-ppo pendulum-trpo mountaincar-ppo]
Writes benchmarks/results/time_to_score.md and .json.

Each run trains in chunks of 4,096 environment steps; after each chunk, 5 deterministic
episodes (seeds 1000 to 1004, observation normalization frozen) are scored by the same code
for both libraries, and the run stops when their mean first reaches the threshold (or at the
budget). The wall time counts learn() only, the scoring left out. Both libraries take
rl-zoo3's settings, gSDE included: probcalc through probcalc.rl.TUNED (checked here against
the copy of rl-zoo3's entries below), Stable-Baselines3 through those entries. One torch
thread, on the CPU; for each pair and seed the probcalc run goes first, then the peer's.

- Pendulum-v1 to -250: PPO (Stable-Baselines3's PPO) and TRPO (sb3-contrib's TRPO).
- MountainCarContinuous-v0 to 90: PPO.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sb3_contrib
import stable_baselines3
import torch
from rl_scoring import episode_returns
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 4_096
EVAL_SEEDS = range(1000, 1005)

# rl-zoo3's entries (hyperparams/ppo.yml, trpo.yml), in Stable-Baselines3's names
RL_ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "Pendulum-v1"): {
        "n_envs": 4,
        "n_steps": 1024,
        "gae_lambda": 0.95,
        "gamma": 0.9,
        "n_epochs": 10,
        "ent_coef": 0.0,
        "learning_rate": 1e-3,
        "clip_range": 0.2,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
    ("trpo", "Pendulum-v1"): {
        "n_envs": 2,
        "n_steps": 1024,
        "gamma": 0.9,
        "n_critic_updates": 15,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
    ("ppo", "MountainCarContinuous-v0"): {
        "normalize": True,
        "n_envs": 1,
        "batch_size": 256,
        "n_steps": 8,
        "gamma": 0.9999,
        "learning_rate": 7.77e-05,
        "ent_coef": 0.00429,
        "clip_range": 0.1,
        "n_epochs": 10,
        "gae_lambda": 0.9,
        "max_grad_norm": 5.0,
        "vf_coef": 0.19,
        "use_sde": True,
        "policy_kwargs": {"log_std_init": -3.29, "ortho_init": False},
    },
}
# (name, task, algorithm, threshold, budget in steps)
PAIRS = {
    "pendulum-ppo": ("Pendulum-v1", "ppo", -250.0, 102_400),
    "pendulum-trpo": ("Pendulum-v1", "trpo", -250.0, 102_400),
    "mountaincar-ppo": ("MountainCarContinuous-v0", "ppo", 90.0, 49_152),
}
PEERS = {
    "ppo": ("Stable-Baselines3 PPO", stable_baselines3.PPO),
    "trpo": ("sb3-contrib TRPO", sb3_contrib.TRPO),
}
# probcalc's name for a setting of the peer's, where they differ
PROBCALC_NAMES = {"n_critic_updates": "critic_epochs"}


def check_tuned_against_rl_zoo(algorithm: str, task: str) -> None:
    """probcalc's TUNED entry holds rl-zoo3's settings (translated) for the pair."""
    tuned = pc.rl.tuned(algorithm, task)
    for name, value in RL_ZOO[algorithm, task].items():
        if name == "normalize":
            assert tuned["normalize_observations"] is value and tuned["normalize_rewards"] is value
        elif name == "policy_kwargs":
            assert all(tuned[key] == v for key, v in value.items()), (name, value)
        elif name == "batch_size" and value > tuned["n_envs"] * tuned["n_steps"]:
            # Stable-Baselines3 trains on the whole rollout then; probcalc says so
            assert tuned["batch_size"] == tuned["n_envs"] * tuned["n_steps"]
        else:
            assert tuned[PROBCALC_NAMES.get(name, name)] == value, (name, value, tuned)


def score(task: str, predict: Callable[[np.ndarray], np.ndarray]) -> float:
    return float(np.mean(episode_returns(task, predict, EVAL_SEEDS)))


def until_threshold(
    learn: Callable[[], int], evaluate: Callable[[], float], threshold: float, budget: int
) -> dict[str, Any]:
    """Alternate timed chunks of learning and untimed scoring until the threshold."""
    wall, steps, curve = 0.0, 0, []
    while steps < budget:
        start = time.perf_counter()
        steps = learn()
        wall += time.perf_counter() - start
        value = evaluate()
        curve.append((steps, wall, value))
        if value >= threshold:
            return {"solved": True, "steps": steps, "wall": wall, "curve": curve}
    return {"solved": False, "steps": steps, "wall": wall, "curve": curve}


def run_probcalc(task: str, algorithm: str, threshold: float, budget: int, seed: int) -> dict:
    check_tuned_against_rl_zoo(algorithm, task)
    agent = pc.rl.ALGORITHMS[algorithm](task, seed=seed, **pc.rl.tuned(algorithm, task))

    def learn() -> int:
        agent.learn(CHUNK)
        return agent.num_timesteps

    return until_threshold(
        learn, lambda: score(task, lambda obs: agent.predict(obs)), threshold, budget
    )


def run_peer(task: str, algorithm: str, threshold: float, budget: int, seed: int) -> dict:
    settings = dict(RL_ZOO[algorithm, task])
    normalize = settings.pop("normalize", False)
    env = make_vec_env(task, n_envs=settings.pop("n_envs"), seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=settings["gamma"])
    model = PEERS[algorithm][1]("MlpPolicy", env, seed=seed, device="cpu", **settings)

    def learn() -> int:
        model.learn(CHUNK, reset_num_timesteps=False)
        return model.num_timesteps

    def predict(obs: np.ndarray) -> np.ndarray:
        return model.predict(env.normalize_obs(obs) if normalize else obs, deterministic=True)[0]

    def evaluate() -> float:
        if normalize:
            env.training = False
        value = score(task, predict)
        if normalize:
            env.training = True
        return value

    return until_threshold(learn, evaluate, threshold, budget)


def report(runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Time to a solved task: probcalc against Stable-Baselines3 and sb3-contrib",
        "",
        f"{platform.processor() or platform.machine()}, one torch thread, torch "
        f"{torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, sb3-contrib "
        f"{sb3_contrib.__version__}. rl-zoo3's settings with gSDE on both sides; scored every "
        f"{CHUNK:,} steps by 5 deterministic episodes; wall time of training only "
        "(benchmarks/bench_time_to_score.py).",
        "",
        "| task, threshold | library | seeds solved | steps per seed | wall time per seed | "
        "median wall time |",
        "|---|---|---:|---|---|---:|",
    ]
    for name, (task, algorithm, threshold, _) in PAIRS.items():
        for library in (f"probcalc {algorithm.upper()}", PEERS[algorithm][0]):
            rows = [r for r in runs if r["pair"] == name and r["library"] == library]
            if not rows:
                continue
            steps = ", ".join(f"{r['steps']:,}" if r["solved"] else "-" for r in rows)
            walls = [r["wall"] if r["solved"] else float("inf") for r in rows]
            shown = ", ".join(f"{w:.1f} s" if np.isfinite(w) else "-" for w in walls)
            median = float(np.median(walls))
            median_text = f"{median:.1f} s" if np.isfinite(median) else "-"
            solved = sum(r["solved"] for r in rows)
            lines.append(
                f"| {task} to {threshold:g} | {library} | {solved} of {len(rows)} | {steps} | "
                f"{shown} | {median_text} |"
            )
    lines += ["", "A '-' is a seed that did not reach the threshold within the budget.", ""]
    for name, (task, algorithm, _, _) in PAIRS.items():
        medians = []
        for library in (f"probcalc {algorithm.upper()}", PEERS[algorithm][0]):
            walls = [
                r["wall"] if r["solved"] else float("inf")
                for r in runs
                if r["pair"] == name and r["library"] == library
            ]
            medians.append(float(np.median(walls)) if walls else float("nan"))
        if np.isfinite(medians).all():
            lines.append(
                f"- {task}, {algorithm.upper()}: probcalc's median wall time is "
                f"{medians[0] / medians[1]:.2f} of {PEERS[algorithm][0]}'s."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for name in args.pairs:
        task, algorithm, threshold, budget = PAIRS[name]
        for seed in args.seeds:
            for library, run in (
                (f"probcalc {algorithm.upper()}", run_probcalc),
                (PEERS[algorithm][0], run_peer),
            ):
                result = run(task, algorithm, threshold, budget, seed)
                runs.append({"pair": name, "library": library, "seed": seed, **result})
                print(
                    name,
                    library,
                    seed,
                    result["solved"],
                    result["steps"],
                    round(result["wall"], 1),
                    flush=True,
                )
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / "time_to_score.json").write_text(json.dumps(runs, indent=1))
    text = report(runs)
    (RESULTS / "time_to_score.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
