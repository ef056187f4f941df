"""Policy-gradient benchmark: probcalc's PPO, TRPO and NaturalPG against Stable-Baselines3's
PPO and sb3-contrib's TRPO, in one run.

Not a test:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_rl.py \
        [--seeds 3] [--tasks pendulum mountaincar]
Writes benchmarks/results/rl.md and one learning-curve PNG per task.

Every pair runs with the same settings and network sizes (64x64 tanh MLPs for policy and
critic, state-independent log-std, Stable-Baselines3's defaults wherever a setting is not
listed), seeds 0, 1, 2, on the CPU with one torch thread, one run after the other. rl-zoo3's
tuned settings use gSDE for these tasks; this benchmark leaves it out on both sides
(bench_time_to_score.py uses it). Each trained policy is scored by the same code: the mean
undiscounted return of 10 deterministic episodes (seeds 1000 to 1009), observation
normalization frozen. Steps per second is environment steps over the wall time of learn(),
rollouts and updates included.

- Pendulum-v1, 100,000 steps. PPO: rl-zoo3's hyperparams/ppo.yml (4 envs, n_steps 1024,
  gamma 0.9, GAE λ 0.95, 10 epochs, lr 1e-3, clip 0.2). TRPO: 2 envs, n_steps 1024, gamma 0.9, 20
  critic updates, lr 1e-3 (rl-zoo3's hyperparams/trpo.yml has 15 critic updates, and gSDE);
  NaturalPG: the same without the line search.
- MountainCarContinuous-v0. PPO: rl-zoo3's settings (normalized observations and rewards,
  1 env, n_steps 8, batch 256, gamma 0.9999, lr 7.77e-5, ent_coef 0.00429, clip 0.1,
  10 epochs, GAE λ 0.9, max_grad_norm 5, vf_coef 0.19, log_std_init -3.29, no orthogonal
  init), 20,000 steps. TRPO: sb3-contrib's defaults with normalization, 50,000 steps.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import matplotlib
import numpy as np
import sb3_contrib
import stable_baselines3
import torch
from rl_scoring import episode_returns, timed_learn, timed_learn_sb3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import probcalc as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"

PENDULUM_PPO = {
    "n_steps": 1024,
    "batch_size": 64,
    "gamma": 0.9,
    "gae_lambda": 0.95,
    "n_epochs": 10,
    "learning_rate": 1e-3,
    "clip_range": 0.2,
    "ent_coef": 0.0,
}
PENDULUM_TRPO = {"n_steps": 1024, "gamma": 0.9, "learning_rate": 1e-3}
# rl-zoo3 gives batch_size 256 with a rollout of 8 transitions: Stable-Baselines3 trains on
# the whole rollout (8) then, which probcalc asks for explicitly (it refuses a minibatch
# larger than the rollout)
MOUNTAINCAR_PPO = {
    "n_steps": 8,
    "batch_size": 8,
    "gamma": 0.9999,
    "learning_rate": 7.77e-05,
    "ent_coef": 0.00429,
    "clip_range": 0.1,
    "n_epochs": 10,
    "gae_lambda": 0.9,
    "max_grad_norm": 5.0,
    "vf_coef": 0.19,
}


def _probcalc_trpo(settings: dict[str, Any], critic_updates: int) -> dict[str, Any]:
    return {**settings, "critic_epochs": critic_updates}


# (label, library, algorithm, settings, n_envs, normalize, extra policy options)
TASKS: dict[str, dict[str, Any]] = {
    "pendulum": {
        "env": "Pendulum-v1",
        "steps": 100_000,
        "runs": [
            ("probcalc PPO", "probcalc", "PPO", PENDULUM_PPO, 4, False, {}),
            ("Stable-Baselines3 PPO", "sb3", "PPO", PENDULUM_PPO, 4, False, {}),
            ("probcalc TRPO", "probcalc", "TRPO", _probcalc_trpo(PENDULUM_TRPO, 20), 2, False, {}),
            (
                "probcalc NaturalPG",
                "probcalc",
                "NaturalPG",
                _probcalc_trpo(PENDULUM_TRPO, 20),
                2,
                False,
                {},
            ),
            (
                "sb3-contrib TRPO",
                "sb3",
                "TRPO",
                {**PENDULUM_TRPO, "n_critic_updates": 20},
                2,
                False,
                {},
            ),
        ],
    },
    "mountaincar": {
        "env": "MountainCarContinuous-v0",
        "steps": None,
        "runs": [
            (
                "probcalc PPO",
                "probcalc",
                "PPO",
                MOUNTAINCAR_PPO,
                1,
                True,
                {"log_std_init": -3.29, "ortho_init": False, "steps": 20_000},
            ),
            (
                "Stable-Baselines3 PPO",
                "sb3",
                "PPO",
                MOUNTAINCAR_PPO,
                1,
                True,
                {"log_std_init": -3.29, "ortho_init": False, "steps": 20_000},
            ),
            ("probcalc TRPO", "probcalc", "TRPO", {"n_steps": 2048}, 1, True, {"steps": 50_000}),
            ("sb3-contrib TRPO", "sb3", "TRPO", {"n_steps": 2048}, 1, True, {"steps": 50_000}),
        ],
    },
}


def score(env_id: str, predict: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean return of deterministic episodes, the same code for every library."""
    return float(np.mean(episode_returns(env_id, predict)))


def run_probcalc(
    env_id: str,
    algorithm: str,
    settings: dict[str, Any],
    n_envs: int,
    normalize: bool,
    options: dict[str, Any],
    steps: int,
    seed: int,
) -> dict[str, Any]:
    make = getattr(pc.rl, algorithm)
    # sb3-contrib's TRPO names its critic batch "batch_size"; probcalc's is critic_batch_size
    settings = {
        ("critic_batch_size" if algorithm != "PPO" and k == "batch_size" else k): v
        for k, v in settings.items()
    }
    agent = make(
        env_id,
        n_envs=n_envs,
        seed=seed,
        normalize_observations=normalize,
        normalize_rewards=normalize,
        **options,
        **settings,
    )
    wall, episodes = timed_learn(agent, steps)
    value = score(env_id, lambda obs: agent.predict(obs[None])[0])
    return {"return": value, "steps_per_second": agent.num_timesteps / wall, "episodes": episodes}


def run_sb3(
    env_id: str,
    algorithm: str,
    settings: dict[str, Any],
    n_envs: int,
    normalize: bool,
    options: dict[str, Any],
    steps: int,
    seed: int,
) -> dict[str, Any]:
    make = stable_baselines3.PPO if algorithm == "PPO" else sb3_contrib.TRPO
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=settings.get("gamma", 0.99))
    model = make(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0, policy_kwargs=options, **settings
    )
    wall, episodes = timed_learn_sb3(model, steps)
    if normalize:
        env.training = False

    def predict(obs: np.ndarray) -> np.ndarray:
        seen = env.normalize_obs(obs) if normalize else obs
        return model.predict(seen, deterministic=True)[0]

    return {
        "return": score(env_id, predict),
        "steps_per_second": model.num_timesteps / wall,
        "episodes": episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Policy gradients: probcalc against Stable-Baselines3 and sb3-contrib",
        "",
        f"Seeds 0..{args.seeds - 1}; one torch thread; evaluation: mean return of 10 "
        "deterministic episodes.",
        f"Python {platform.python_version()}, torch {torch.__version__}, stable-baselines3 "
        f"{stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}, gymnasium "
        f"{gymnasium.__version__}; settings in benchmarks/bench_rl.py.",
    ]
    for task in args.tasks:
        spec = TASKS[task]
        results: dict[str, list[dict[str, Any]]] = {}
        for seed in range(args.seeds):
            for label, library, algorithm, settings, n_envs, normalize, options in spec["runs"]:
                options = dict(options)
                steps = options.pop("steps", spec["steps"])
                run = run_probcalc if library == "probcalc" else run_sb3
                result = run(
                    spec["env"], algorithm, settings, n_envs, normalize, options, steps, seed
                )
                result["steps"] = steps
                results.setdefault(label, []).append(result)
                print(
                    f"{spec['env']:26s} {label:22s} seed {seed}: return {result['return']:8.1f},"
                    f" {result['steps_per_second']:6.0f} steps/s",
                    flush=True,
                )
        lines += [
            "",
            f"## {spec['env']}",
            "",
            "| algorithm | steps | returns per seed | mean return | steps/s per seed | "
            "mean steps/s |",
            "|---|---:|---|---:|---|---:|",
        ]
        for label, runs in results.items():
            returns = [r["return"] for r in runs]
            speeds = [r["steps_per_second"] for r in runs]
            per_seed = ", ".join(f"{v:.0f}" for v in returns)
            speed_per_seed = ", ".join(f"{v:.0f}" for v in speeds)
            lines.append(
                f"| {label} | {runs[0]['steps']:,} | {per_seed} | "
                f"{np.mean(returns):.0f} | {speed_per_seed} | {np.mean(speeds):.0f} |"
            )
        figure, axis = plt.subplots(figsize=(7, 4))
        for index, (label, runs) in enumerate(results.items()):
            for number, run in enumerate(runs):
                if len(run["episodes"]) < 2:
                    continue
                steps, values = np.array(run["episodes"]).T
                window = min(20, len(values))
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                axis.plot(
                    steps[window - 1 :],
                    smooth,
                    color=f"C{index}",
                    alpha=0.8,
                    label=label if number == 0 else None,
                )
        axis.set_xlabel("environment steps")
        axis.set_ylabel("episode return (running mean)")
        axis.set_title(f"{spec['env']}, {args.seeds} seeds each")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(RESULTS / f"rl_{task}.png", dpi=110)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
