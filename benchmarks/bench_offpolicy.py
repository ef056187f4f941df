"""Off-policy benchmark: probcalc's SAC and TD3 against Stable-Baselines3's SAC and TD3, in
one run.

Not a test; needs the bench extra (and the mujoco extra for --halfcheetah):
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_offpolicy.py \
        [--seeds 3] [--algorithms sac td3] [--steps 20000] [--halfcheetah STEPS]
    ... --quick                     a smoke run: 3,000 steps, one seed, learning_starts 500
    ... --only probcalc|sb3 --first-seed K --out PART.md    one part of a split run
    ... --report PART1.json PART2.json                     the report of the parts together
Writes benchmarks/results/offpolicy.md and, next to it, offpolicy.json with every run's raw
numbers (rewritten after each run, so that a stopped run keeps what it finished).

What is compared, on the CPU with one torch thread (Stable-Baselines3 with device="cpu"):

- Pendulum-v1, 20,000 steps, seeds 0, 1, 2, each library with rl-zoo3's settings for it
  (probcalc's from probcalc.rl.tuned, checked here against the same table written out in
  Stable-Baselines3's names). SAC: learning_rate 1e-3, the rest the defaults, which are the
  same in both (256x256 ReLU networks, buffer 1e6, batch 256, tau 0.005, gamma 0.99,
  learning_starts 100, learned entropy coefficient). TD3: gamma 0.98, buffer_size 200,000,
  learning_starts 10,000, learning_rate 1e-3, 400x300 networks, train_freq 1,
  gradient_steps 1 and Gaussian exploration noise of std 0.1 added to the actions scaled to
  [-1, 1] (Stable-Baselines3: NormalActionNoise(0, 0.1), which it adds in that scaled space).
  The two libraries run one after the other for each seed and algorithm (probcalc first on
  even seeds, Stable-Baselines3 first on odd ones), so that both see the same machine.
- Per run: the return of the trained policy, acting deterministically, over 10 episodes
  (seeds 1000 to 1009), mean ± std; environment steps per second, the steps over the wall
  time of learn() less the evaluations made during it; and the training time (the same
  clock) until a deterministic evaluation of 5 episodes (seeds 2000 to 2004), made every
  1,000 steps from a callback, first reaches a mean return of -250 ("not reached" if it
  never does). probcalc evaluates in its learn callback, after the round of the step (its
  update included); Stable-Baselines3 in a BaseCallback's _on_step, after the step and
  before that step's update (one gradient step apart out of thousands). Every evaluation
  uses the same code (rl_scoring.episode_returns) on a separate environment, so training's
  random streams are not touched.
- Targets, per algorithm: probcalc's mean return at least Stable-Baselines3's, its steps
  per second at least twice Stable-Baselines3's, its time to -250 at most half of
  Stable-Baselines3's (the mean over the seeds that reach it; probcalc must reach it in at
  least as many seeds).
- --halfcheetah STEPS: HalfCheetah-v5, SAC with rl-zoo3's settings (learning_starts 10,000,
  the rest the defaults), the first seed, STEPS steps per library: the final deterministic
  10-episode return and the steps per second (no threshold).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch
from rl_scoring import EVAL_SEEDS, episode_returns
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results"
PENDULUM, HALFCHEETAH = "Pendulum-v1", "HalfCheetah-v5"
THRESHOLD = -250.0
EVAL_EVERY = 1_000
THRESHOLD_SEEDS = range(2000, 2005)
QUICK_STEPS, QUICK_LEARNING_STARTS = 3_000, 500
LIBRARIES = {"probcalc": "probcalc", "sb3": "Stable-Baselines3"}

# rl-zoo3's hyperparams/sac.yml and td3.yml in Stable-Baselines3's names (what is not listed
# is the library's default); noise_type and noise_std become an action-noise object
RL_ZOO3: dict[str, dict[str, dict[str, Any]]] = {
    "sac": {
        PENDULUM: {"learning_rate": 1e-3},
        HALFCHEETAH: {"learning_starts": 10_000},
    },
    "td3": {
        PENDULUM: {
            "gamma": 0.98,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "noise_type": "normal",
            "noise_std": 0.1,
            "learning_rate": 1e-3,
            "train_freq": 1,
            "gradient_steps": 1,
            "policy_kwargs": {"net_arch": [400, 300]},
        },
    },
}
# the defaults of the two libraries that the tables above leave out; probcalc's must match
SHARED_DEFAULTS = {
    "sac": {"hidden": (256, 256), "learning_starts": 100, "batch_size": 256, "tau": 0.005},
    "td3": {"policy_delay": 2, "target_policy_noise": 0.2, "target_noise_clip": 0.5},
}


# ---------------------------------------------------------------------- settings
def zoo_settings(algorithm: str, env_id: str, quick: bool) -> dict[str, Any]:
    """rl-zoo3's settings in Stable-Baselines3's names; --quick caps learning_starts."""
    settings = json.loads(json.dumps(RL_ZOO3[algorithm][env_id]))  # a deep copy
    if quick:
        settings["learning_starts"] = min(
            settings.get("learning_starts", 100), QUICK_LEARNING_STARTS
        )
    return settings


def as_probcalc(settings: dict[str, Any]) -> dict[str, Any]:
    """Stable-Baselines3's names to probcalc's (net_arch is probcalc's hidden)."""
    settings = dict(settings)
    net_arch = settings.pop("policy_kwargs", {}).get("net_arch")
    if net_arch is not None:
        settings["hidden"] = tuple(net_arch)
    return settings


def probcalc_settings(algorithm: str, env_id: str, quick: bool) -> dict[str, Any]:
    """probcalc's tuned settings, which must be rl-zoo3's (the comparison would be unfair
    otherwise): SystemExit names the settings that differ."""
    tuned = pc.rl.tuned(algorithm, env_id)
    expected = as_probcalc(zoo_settings(algorithm, env_id, quick=False))
    config = getattr(pc.rl, f"{algorithm.upper()}Config")
    defaults = {
        name: getattr(config(), name) for name in {**expected, **SHARED_DEFAULTS[algorithm]}
    }
    actual = {**defaults, **tuned}
    wanted = {**defaults, **SHARED_DEFAULTS[algorithm], **expected}
    differ = {
        name: (actual[name], value) for name, value in wanted.items() if actual[name] != value
    }
    if differ:
        raise SystemExit(
            f"probcalc's settings for {algorithm} on {env_id} are not rl-zoo3's: "
            + ", ".join(
                f"{name} {got!r} (rl-zoo3 {want!r})" for name, (got, want) in differ.items()
            )
        )
    if quick:
        tuned["learning_starts"] = min(actual["learning_starts"], QUICK_LEARNING_STARTS)
    return tuned


def sb3_model(algorithm: str, env_id: str, seed: int, quick: bool) -> Any:
    """A Stable-Baselines3 model with rl-zoo3's settings, on the CPU."""
    settings = zoo_settings(algorithm, env_id, quick)
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    noise_type, noise_std = settings.pop("noise_type", None), settings.pop("noise_std", None)
    if noise_type is not None:
        size = env.action_space.shape[-1]
        noise = NormalActionNoise if noise_type == "normal" else OrnsteinUhlenbeckActionNoise
        settings["action_noise"] = noise(np.zeros(size), noise_std * np.ones(size))
    make = stable_baselines3.SAC if algorithm == "sac" else stable_baselines3.TD3
    return make("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings)


# ---------------------------------------------------------------------- timing
class TrainingClock:
    """The wall time of learn() less the evaluations made during it; every EVAL_EVERY steps
    a deterministic evaluation (THRESHOLD_SEEDS) and the first time its mean return reaches
    THRESHOLD (threshold None: no evaluations)."""

    def __init__(self, env_id: str, threshold: float | None) -> None:
        self.env_id, self.threshold = env_id, threshold
        self.started = 0.0
        self.evaluating = 0.0  # seconds spent in evaluations
        self.curve: list[tuple[int, float, float]] = []  # (step, return, training seconds)
        self.reached: tuple[int, float] | None = None  # (step, training seconds)

    def start(self) -> None:
        self.started = time.perf_counter()

    def training_seconds(self) -> float:
        return time.perf_counter() - self.started - self.evaluating

    def check(self, step: int, predict: Callable[[np.ndarray], np.ndarray]) -> None:
        if self.threshold is None or step % EVAL_EVERY:
            return
        before = time.perf_counter()
        training = before - self.started - self.evaluating
        value = float(np.mean(episode_returns(self.env_id, predict, THRESHOLD_SEEDS)))
        self.curve.append((step, value, training))
        if self.reached is None and value >= self.threshold:
            self.reached = (step, training)
        self.evaluating += time.perf_counter() - before


class SB3Clock(BaseCallback):
    """Runs a TrainingClock's evaluations from Stable-Baselines3's training loop."""

    def __init__(self, clock: TrainingClock) -> None:
        super().__init__()
        self.clock = clock

    def _on_step(self) -> bool:
        self.clock.check(self.num_timesteps, self._act)
        return True

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return self.model.predict(obs, deterministic=True)[0]


def run(
    library: str,
    algorithm: str,
    env_id: str,
    steps: int,
    seed: int,
    quick: bool,
    threshold: float | None,
) -> dict[str, Any]:
    """Train one agent, timing learn() without the evaluations, then score it."""
    clock = TrainingClock(env_id, threshold)
    if library == "probcalc":
        agent = getattr(pc.rl, algorithm.upper())(
            env_id, seed=seed, **probcalc_settings(algorithm, env_id, quick)
        )

        def predict(obs: np.ndarray) -> np.ndarray:
            return agent.predict(obs, deterministic=True)

        def callback(agent: Any, row: dict[str, Any]) -> None:
            clock.check(row["step"], predict)

        clock.start()
        agent.learn(steps, callback=callback)
        training = clock.training_seconds()
        made = agent.num_timesteps
    else:
        model = sb3_model(algorithm, env_id, seed, quick)

        def predict(obs: np.ndarray) -> np.ndarray:
            return model.predict(obs, deterministic=True)[0]

        clock.start()
        model.learn(steps, callback=SB3Clock(clock))
        training = clock.training_seconds()
        made = model.num_timesteps
    returns = episode_returns(env_id, predict, EVAL_SEEDS)
    return {
        "env": env_id,
        "algorithm": algorithm,
        "library": library,
        "seed": seed,
        "steps": made,
        "returns": returns,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "training_seconds": training,
        "evaluation_seconds": clock.evaluating,
        "steps_per_second": made / training,
        "threshold": threshold,
        "threshold_step": clock.reached[0] if clock.reached else None,
        "threshold_seconds": clock.reached[1] if clock.reached else None,
        "curve": clock.curve,
    }


# ---------------------------------------------------------------------- report
def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc/cpuinfo: keep platform's name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "probcalc": getattr(pc, "__version__", "?"),
    }


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def _seconds(value: float | None) -> str:
    return "not reached" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _met(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def _threshold_text(s: dict[str, Any]) -> str:
    """A library's time to the threshold and how many seeds reached it."""
    time_text = _seconds(s["threshold_seconds"])
    unit = "" if s["reached"] == 0 else " s"
    return f"{time_text}{unit} ({s['reached']}/{s['seeds']} seeds)"


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds of one library's runs of one algorithm."""
    reached = [r["threshold_seconds"] for r in runs if r["threshold_seconds"] is not None]
    return {
        "seeds": len(runs),
        "return": _mean(r["return_mean"] for r in runs),
        "return_spread": float(np.std([r["return_mean"] for r in runs])),
        "steps_per_second": _mean(r["steps_per_second"] for r in runs),
        "threshold_seconds": _mean(reached),
        "reached": len(reached),
    }


def pendulum_lines(runs: list[dict[str, Any]], algorithms: list[str]) -> list[str]:
    lines = [
        "",
        f"## {PENDULUM}",
        "",
        "Means over seeds (return ± the spread of the per-seed means). Time to "
        f"{THRESHOLD:.0f}: training seconds until the 5-episode evaluation first reaches it, "
        "the mean over the seeds that reach it.",
        "",
        "| algorithm | library | seeds | steps | return | steps/s | time to "
        f"{THRESHOLD:.0f} (s) | seeds reaching {THRESHOLD:.0f} |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    ratios = [
        "",
        "| algorithm | steps/s probcalc / SB3 | time to "
        f"{THRESHOLD:.0f} SB3 / probcalc | return probcalc − SB3 |",
        "|---|---:|---:|---:|",
    ]
    for algorithm in algorithms:
        found: dict[str, dict[str, Any]] = {}
        for library, name in LIBRARIES.items():
            mine = [r for r in runs if r["algorithm"] == algorithm and r["library"] == library]
            if not mine:
                continue
            found[library] = s = summary(mine)
            spread = f" ± {s['return_spread']:.1f}" if s["seeds"] > 1 else ""
            lines.append(
                f"| {algorithm.upper()} | {name} | {s['seeds']} | {mine[0]['steps']:,} | "
                f"{s['return']:.1f}{spread} | {s['steps_per_second']:.0f} | "
                f"{_seconds(s['threshold_seconds'])} | {s['reached']}/{s['seeds']} |"
            )
        if len(found) < 2:
            verdicts.append(f"- {algorithm.upper()}: only one library ran; no targets judged.")
            continue
        ours, theirs = found["probcalc"], found["sb3"]
        speed = ours["steps_per_second"] / theirs["steps_per_second"]
        if ours["reached"] and theirs["reached"]:
            faster = theirs["threshold_seconds"] / ours["threshold_seconds"]
            faster_text = f"{faster:.2f}"
        else:
            faster, faster_text = math.nan, "—"
        ratios.append(
            f"| {algorithm.upper()} | {speed:.2f} | {faster_text} | "
            f"{ours['return'] - theirs['return']:+.1f} |"
        )
        return_met = ours["return"] >= theirs["return"]
        speed_met = speed >= 2.0
        if ours["reached"] == 0 or ours["reached"] < theirs["reached"]:
            time_met = False  # neither reaching it shows nothing: not met either
        elif theirs["reached"] == 0:
            time_met = True
        else:
            time_met = faster >= 2.0
        ratio_text = "" if math.isnan(faster) else f", ratio {faster_text}"
        verdicts += [
            f"- {algorithm.upper()}, return at least Stable-Baselines3's: "
            f"{ours['return']:.1f} against {theirs['return']:.1f}: {_met(return_met)}.",
            f"- {algorithm.upper()}, steps/s at least 2x Stable-Baselines3's: "
            f"{speed:.2f}x: {_met(speed_met)}.",
            f"- {algorithm.upper()}, time to {THRESHOLD:.0f} at most half of "
            f"Stable-Baselines3's: {_threshold_text(ours)} against {_threshold_text(theirs)}"
            f"{ratio_text}: {_met(time_met)}.",
        ]
    lines += ratios
    lines += ["", "Targets:", "", *verdicts]
    lines += [
        "",
        "Per seed (return: mean ± std of the 10 evaluation episodes):",
        "",
        "| algorithm | library | seed | return | steps/s | training s | time to "
        f"{THRESHOLD:.0f} (s) | at step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for algorithm in algorithms:
        for library, name in LIBRARIES.items():
            for r in runs:
                if r["algorithm"] != algorithm or r["library"] != library:
                    continue
                step = r["threshold_step"]
                lines.append(
                    f"| {algorithm.upper()} | {name} | {r['seed']} | {r['return_mean']:.1f} ± "
                    f"{r['return_std']:.1f} | {r['steps_per_second']:.0f} | "
                    f"{r['training_seconds']:.1f} | {_seconds(r['threshold_seconds'])} | "
                    f"{'—' if step is None else f'{step:,}'} |"
                )
    return lines


def halfcheetah_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        f"## {HALFCHEETAH}, SAC",
        "",
        "One seed; return: mean ± std of the 10 evaluation episodes.",
        "",
        "| library | seed | steps | return | steps/s | training s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for library, name in LIBRARIES.items():
        for r in runs:
            if r["library"] == library:
                lines.append(
                    f"| {name} | {r['seed']} | {r['steps']:,} | {r['return_mean']:.1f} ± "
                    f"{r['return_std']:.1f} | {r['steps_per_second']:.0f} | "
                    f"{r['training_seconds']:.1f} |"
                )
    speeds = {
        library: _mean(r["steps_per_second"] for r in runs if r["library"] == library)
        for library in LIBRARIES
    }
    if all(math.isfinite(value) for value in speeds.values()):
        lines += ["", f"Steps/s probcalc / SB3: {speeds['probcalc'] / speeds['sb3']:.2f}."]
    return lines


def report(data: dict[str, Any]) -> str:
    runs = data["runs"]
    info = data["machine"]
    quick = any(r.get("quick") for r in runs)
    algorithms = [a for a in ("sac", "td3") if any(r["algorithm"] == a for r in runs)]
    pendulum = [r for r in runs if r["env"] == PENDULUM]
    halfcheetah = [r for r in runs if r["env"] == HALFCHEETAH]
    lines = [
        "# Off-policy: probcalc's SAC and TD3 against Stable-Baselines3's",
        "",
        "Made by benchmarks/bench_offpolicy.py (its docstring gives the settings and what "
        "is measured).",
    ]
    if quick:
        lines += [
            "",
            f"**A smoke run (--quick: {QUICK_STEPS:,} steps, learning_starts at most "
            f"{QUICK_LEARNING_STARTS}): these numbers are not the benchmark.**",
        ]
    lines += [
        "",
        f"Machine: {info['cpu']}, one torch thread, Stable-Baselines3 on device='cpu'. "
        f"Python {info['python']}, torch {info['torch']}, stable-baselines3 "
        f"{info['stable_baselines3']}, gymnasium {info['gymnasium']}, probcalc "
        f"{info['probcalc']}.",
        "Each library with rl-zoo3's settings for it. Return: the deterministic policy over "
        f"10 episodes (seeds {EVAL_SEEDS[0]} to {EVAL_SEEDS[-1]}). Steps/s: environment "
        "steps over the wall time of learn() less the evaluations made during it.",
    ]
    if pendulum:
        lines += pendulum_lines(pendulum, algorithms)
    if halfcheetah:
        lines += halfcheetah_lines(halfcheetah)
    return "\n".join(lines) + "\n"


def write(out: Path, data: dict[str, Any], markdown: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    if markdown:
        out.write_text(report(data))


# ---------------------------------------------------------------------- main
def check_halfcheetah() -> None:
    """Fail before any training when HalfCheetah-v5 cannot be made."""
    try:
        gymnasium.make(HALFCHEETAH).close()
    except Exception as error:  # any failure means the same: it cannot run here
        raise SystemExit(
            f"--halfcheetah needs {HALFCHEETAH}, which cannot be made here ({error!r}); "
            f"install the mujoco extra (mujoco, imageio)"
        ) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds to run (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--algorithms", nargs="+", default=["sac", "td3"], choices=["sac", "td3"])
    parser.add_argument("--steps", type=int, default=None, help="Pendulum steps (20000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3000 steps, 1 seed")
    parser.add_argument("--halfcheetah", type=int, default=0, metavar="STEPS")
    parser.add_argument("--only", choices=list(LIBRARIES), default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "offpolicy.md")
    parser.add_argument(
        "--report", type=Path, nargs="+", default=None, metavar="JSON",
        help="write --out from these runs' JSON files, training nothing",
    )  # fmt: skip
    args = parser.parse_args()
    if args.report:
        parts = [json.loads(path.read_text()) for path in args.report]
        data = {"machine": parts[0]["machine"], "runs": [r for p in parts for r in p["runs"]]}
        args.out.write_text(report(data))
        print(report(data))
        return
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else 20_000)
    for name, value in (("--seeds", seeds), ("--steps", steps)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.halfcheetah < 0:
        parser.error(f"--halfcheetah must be a number of steps >= 0, got {args.halfcheetah}")
    if args.halfcheetah:
        check_halfcheetah()
    torch.set_num_threads(1)
    libraries = [args.only] if args.only else list(LIBRARIES)
    data: dict[str, Any] = {"machine": machine(), "runs": []}

    def record(result: dict[str, Any]) -> None:
        result["quick"] = args.quick
        data["runs"].append(result)
        write(args.out, data, markdown=False)
        reached = _seconds(result["threshold_seconds"]) if result["threshold"] else "—"
        print(
            f"{result['env']:15s} {result['algorithm'].upper():4s} {result['library']:9s} "
            f"seed {result['seed']}: return {result['return_mean']:8.1f} ± "
            f"{result['return_std']:6.1f}, {result['steps_per_second']:6.1f} steps/s, "
            f"to {THRESHOLD:.0f}: {reached}",
            flush=True,
        )

    for seed in range(args.first_seed, args.first_seed + seeds):
        order = libraries if seed % 2 == 0 else libraries[::-1]
        for algorithm in args.algorithms:
            for library in order:
                record(run(library, algorithm, PENDULUM, steps, seed, args.quick, THRESHOLD))
    if args.halfcheetah:
        for library in libraries:
            record(
                run(
                    library, "sac", HALFCHEETAH, args.halfcheetah, args.first_seed, args.quick, None
                )
            )
    write(args.out, data, markdown=True)
    print(report(data))


if __name__ == "__main__":
    main()
