"""MuJoCo benchmark: probcalc's PPO against Stable-Baselines3's PPO on HalfCheetah-v5.

Not a test; needs the bench and mujoco extras:
    export PROBCALC_EXTRAS=dev,bench,mujoco
    bash .ci/venv python benchmarks/bench_mujoco.py --library probcalc
    bash .ci/venv python benchmarks/bench_mujoco.py --library sb3
    bash .ci/venv python benchmarks/bench_mujoco.py --report
Each run writes benchmarks/results/mujoco_<library>_seed<seed>.json; --report writes
mujoco.md and mujoco_halfcheetah.png over every seed run. The two runs can go side by side
(one torch thread each).

1,000,000 steps (--seed: 0, 1 and 2 for probcalc, 0 for Stable-Baselines3), rl-zoo3's
HalfCheetah settings for both (hyperparams/ppo.yml: normalize observations and rewards,
1 env, n_steps 512, batch 64, gamma 0.98, lr 2.0633e-5, ent_coef 0.000401762, clip 0.1,
20 epochs, GAE λ 0.92, max_grad_norm 0.8, vf_coef 0.58096, log_std_init -2, no orthogonal
init, ReLU, 256x256 for policy and critic). Scored by the same code: 10 deterministic
episodes (seeds 1000 to 1009) with the observation normalization frozen.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rl_scoring import episode_returns, timed_learn, timed_learn_sb3

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "HalfCheetah-v5"
PPO_SETTINGS = {
    "n_steps": 512,
    "batch_size": 64,
    "gamma": 0.98,
    "learning_rate": 2.0633e-05,
    "ent_coef": 0.000401762,
    "clip_range": 0.1,
    "n_epochs": 20,
    "gae_lambda": 0.92,
    "max_grad_norm": 0.8,
    "vf_coef": 0.58096,
}
SB3_POLICY_KWARGS = {
    "log_std_init": -2,
    "ortho_init": False,
    "activation_fn": torch.nn.ReLU,
    "net_arch": {"pi": [256, 256], "vf": [256, 256]},
}


def score(predict: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    return episode_returns(ENV, predict)


def run_probcalc(steps: int, seed: int) -> dict[str, object]:
    import probcalc as pc

    settings = pc.rl.tuned("ppo", ENV)  # rl-zoo3's entry, as PPO_SETTINGS for the peer
    assert all(settings[name] == value for name, value in PPO_SETTINGS.items())
    agent = pc.rl.PPO(ENV, seed=seed, **settings)
    wall, episodes = timed_learn(agent, steps)
    returns = score(lambda obs: agent.predict(obs[None])[0])
    return {
        "library": "probcalc PPO",
        "returns": returns,
        "wall": wall,
        "steps": agent.num_timesteps,
        "episodes": episodes,
    }


def run_sb3(steps: int, seed: int) -> dict[str, object]:
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(ENV, n_envs=1, seed=seed), gamma=PPO_SETTINGS["gamma"])
    model = stable_baselines3.PPO(
        "MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=SB3_POLICY_KWARGS, **PPO_SETTINGS
    )

    wall, episodes = timed_learn_sb3(model, steps)
    env.training = False
    returns = score(lambda obs: model.predict(env.normalize_obs(obs), deterministic=True)[0])
    return {
        "library": "Stable-Baselines3 PPO",
        "returns": returns,
        "wall": wall,
        "steps": model.num_timesteps,
        "episodes": episodes,
    }


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("mujoco_*_seed*.json")):
        run = json.loads(path.read_text())
        run["seed"] = int(path.stem.rsplit("seed", 1)[1])
        runs.setdefault(run["library"], []).append(run)
    lines = [
        "# PPO on HalfCheetah-v5: probcalc vs Stable-Baselines3",
        "",
        "1,000,000 steps, rl-zoo3 settings (see benchmarks/bench_mujoco.py), one torch thread "
        "each, on the 2-core machine with another run beside each. Return: mean of 10 "
        "deterministic episodes per seed.",
        "",
        "| library | seeds | return per seed | mean return | steps/s per seed | "
        "wall time per seed |",
        "|---|---|---|---:|---|---|",
    ]
    figure, axis = plt.subplots(figsize=(7, 4))
    for library, seeds in runs.items():
        means = [float(np.mean(run["returns"])) for run in seeds]
        speeds = ", ".join(f"{run['steps'] / run['wall']:.0f}" for run in seeds)
        minutes = ", ".join(f"{run['wall'] / 60:.1f} min" for run in seeds)
        lines.append(
            f"| {library} | {', '.join(str(run['seed']) for run in seeds)} | "
            f"{', '.join(f'{m:.0f}' for m in means)} | {np.mean(means):.0f} | {speeds} | "
            f"{minutes} |"
        )
        for run in seeds:
            steps, values = np.array(run["episodes"]).T
            window = 10
            axis.plot(
                steps[window - 1 :],
                np.convolve(values, np.ones(window) / window, "valid"),
                label=f"{library}, seed {run['seed']}",
            )
    axis.set_xlabel("environment steps")
    axis.set_ylabel("episode return (mean of 10)")
    axis.set_title("PPO on HalfCheetah-v5, rl-zoo3 settings")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS / "mujoco_halfcheetah.png", dpi=110)
    (RESULTS / "mujoco.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", choices=["probcalc", "sb3"])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    torch.set_num_threads(1)
    run = run_probcalc if args.library == "probcalc" else run_sb3
    result = run(args.steps, args.seed)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mujoco_{args.library}_seed{args.seed}.json").write_text(json.dumps(result))
    print(result["library"], np.mean(result["returns"]), result["steps"] / result["wall"])


if __name__ == "__main__":
    main()
