"""Where PPO's time goes: rollout and update, probcalc against Stable-Baselines3.

Not a test:
    PROBCALC_EXTRAS=dev,bench,mujoco bash .ci/venv python benchmarks/bench_ppo_profile.py
Writes benchmarks/results/ppo_profile.md.

Both libraries take rl-zoo3's PPO settings (probcalc.rl.TUNED; gSDE on Pendulum) and one
torch thread. After three warm-up rollouts and updates, each library runs 4 more (or as
many as make 16,384 steps); the table gives the median seconds per rollout (acting,
environment steps, bookkeeping) and per update (every epoch's minibatch steps), and the
update's cost per minibatch step. The probcalc update is then profiled with cProfile, and
the functions with the most time of their own are listed.

probcalc runs twice: eager, and with ``compile=True`` (each minibatch's forward and
backward pass compiled by torch.compile); the compilation's time is the warm-up updates'
less as many median updates.
"""

from __future__ import annotations

import cProfile
import io
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

import stable_baselines3
import torch
from bench_mujoco import PPO_SETTINGS, SB3_POLICY_KWARGS
from bench_time_to_score import RL_ZOO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results"

WARM_UP = 3  # rollouts and updates before timing (compile=True compiles in the first)


def rounds(task: str) -> int:
    """Rollouts timed: 4, or as many as make 16,384 steps."""
    tuned = pc.rl.tuned("ppo", task)
    return max(4, 16_384 // (tuned["n_envs"] * tuned["n_steps"]))


SB3_HALFCHEETAH = {
    "normalize": True,
    "n_envs": 1,
    **PPO_SETTINGS,
    "policy_kwargs": SB3_POLICY_KWARGS,
}


def minibatch_steps(settings: dict[str, Any]) -> int:
    rollout = settings["n_envs"] * settings["n_steps"]
    return settings["n_epochs"] * -(-rollout // settings["batch_size"])


def profile_probcalc(task: str, compile: bool) -> tuple[float, float, float, str]:
    """Median seconds per rollout and per update after WARM_UP of each, the warm-up's
    extra seconds (compilation and recompilation), and a cProfile of one more update."""
    agent = pc.rl.PPO(task, seed=0, compile=compile, **pc.rl.tuned("ppo", task))
    rollouts, updates = [], []
    for _ in range(WARM_UP + rounds(task)):
        start = time.perf_counter()
        rollout = agent.collect()
        middle = time.perf_counter()
        agent.update(rollout)
        rollouts.append(middle - start)
        updates.append(time.perf_counter() - middle)
    update = statistics.median(updates[WARM_UP:])
    warm_up = sum(updates[:WARM_UP]) - WARM_UP * update
    profiler = cProfile.Profile()
    rollout = agent.collect()
    profiler.enable()
    agent.update(rollout)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    return statistics.median(rollouts[WARM_UP:]), update, warm_up, text.getvalue()


def profile_sb3(settings: dict[str, Any], task: str) -> tuple[float, float]:
    settings = dict(settings)
    normalize = settings.pop("normalize", False)
    env = make_vec_env(task, n_envs=settings.pop("n_envs"), seed=0)
    if normalize:
        env = VecNormalize(env, gamma=settings["gamma"])
    model = stable_baselines3.PPO("MlpPolicy", env, seed=0, device="cpu", **settings)
    times = {"collect_rollouts": [], "train": []}
    for name in times:
        method = getattr(model, name)

        def timed(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = _method(*args, **kwargs)
            times[_name].append(time.perf_counter() - start)
            return result

        setattr(model, name, timed)
    rollout = model.n_envs * model.n_steps
    model.learn((WARM_UP + rounds(task)) * rollout)
    return (
        statistics.median(times["collect_rollouts"][WARM_UP:]),
        statistics.median(times["train"][WARM_UP:]),
    )


def main() -> None:
    torch.set_num_threads(1)
    lines = [
        "# Where PPO's time goes: probcalc and Stable-Baselines3",
        "",
        f"{platform.machine()}, one torch thread, torch {torch.__version__}, "
        f"stable-baselines3 {stable_baselines3.__version__}; rl-zoo3's settings; medians over "
        "16,384 steps or 4 rollouts after 3 of warm-up (benchmarks/bench_ppo_profile.py).",
        "",
        "| task | library | steps per rollout | rollout | update | per minibatch step | steps/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    profiles, compilations = [], []
    for task, sb3_settings in (
        ("Pendulum-v1", RL_ZOO["ppo", "Pendulum-v1"]),
        ("HalfCheetah-v5", SB3_HALFCHEETAH),
    ):
        tuned = pc.rl.tuned("ppo", task)
        steps = tuned["n_envs"] * tuned["n_steps"]
        updates = minibatch_steps({"batch_size": 64, "n_epochs": 10, **tuned})
        rollout, update, _, profile = profile_probcalc(task, compile=False)
        profiles.append((task, profile))
        compiled_rollout, compiled_update, compilation, _ = profile_probcalc(task, compile=True)
        compilations.append((task, compilation, update - compiled_update, updates))
        peer_rollout, peer_update = profile_sb3(sb3_settings, task)
        for library, (r, u) in (
            ("probcalc", (rollout, update)),
            ("probcalc, compile=True", (compiled_rollout, compiled_update)),
            ("Stable-Baselines3", (peer_rollout, peer_update)),
        ):
            lines.append(
                f"| {task} | {library} | {steps:,} | {r:.3f} s | {u:.3f} s | "
                f"{1000 * u / updates:.2f} ms | {steps / (r + u):,.0f} |"
            )
        print("\n".join(lines[-3:]), flush=True)
    lines += [""]
    for task, compilation, saved, updates in compilations:
        per_update = f"{saved:.3f} s per update ({updates} minibatch steps)"
        even = f"{compilation / saved:,.0f} updates" if saved > 0 else "never"
        lines.append(
            f"- {task}: compilation {compilation:.1f} s; compile=True saves {per_update}; "
            f"it pays after {even}."
        )
    lines.append("")
    for task, profile in profiles:
        body = profile[profile.index("ncalls") :] if "ncalls" in profile else profile
        lines += [f"probcalc's update on {task}, cProfile, by own time:", "", "```", body.strip()]
        lines += ["```", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ppo_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
