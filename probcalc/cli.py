"""The ``probcalc`` command: train, evaluate and plot policy-gradient runs.

    probcalc train ppo --env Pendulum-v1 --steps 100000 --seed 0 --out runs/pendulum
    probcalc evaluate runs/pendulum
    probcalc plot runs/pendulum

Settings, each layer overriding the one before: the algorithm's defaults, the tuned
settings for the task (probcalc.rl.TUNED; ``--no-tuned`` skips them), a TOML file
(``--config``), then ``--set key=value`` flags (values read as TOML: 1e-3, true, "linear").
A run folder holds run.json (what was run), progress.csv, episodes.csv, checkpoint.pt and
model.pt; ``--resume`` continues a stopped run from its checkpoint, with the settings and
length recorded in run.json (other flags are ignored then).

Data-parallel training: launched by torchrun, each process is a rank that steps its own
environments (``n_envs`` each), and ``--steps`` counts the steps of all of them:

    torchrun --nproc_per_node=2 -m probcalc train ppo --env Pendulum-v1 --steps 100000 \
        --out runs/ddp

The process group is gloo (the networks live on the CPU), with ``--timeout`` seconds for a
collective; rank 0 alone writes the run folder and prints.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

import probcalc as pc

RUN_FILE = "run.json"


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string such as linear or mlp


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if not args.no_tuned:
        settings = pc.rl.tuned(args.algorithm, args.env)
        budget = pc.rl.tuned_steps(args.algorithm, args.env)
        if budget is not None:
            settings["total_steps"] = budget
    if args.config is not None:
        with open(args.config, "rb") as handle:
            settings.update(tomllib.load(handle))
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set takes key=value, got {item!r}")
        settings[key.strip().replace("-", "_")] = _parse_value(value.strip())
    if args.seed is not None:
        settings["seed"] = args.seed
    if args.steps is not None:
        settings["total_steps"] = args.steps
    if "total_steps" not in settings:
        raise SystemExit(f"no tuned step budget for {args.algorithm} on {args.env}: give --steps")
    return settings


def _join_process_group(timeout: float) -> bool:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join the process group, gloo
    with a timeout on every collective. Whether this call started it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    return True


def train(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    started = _join_process_group(args.timeout)
    try:
        agent = _train(args)
        if started:  # leave together: gloo aborts a process torn down while a peer works on
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()
    if agent.rank != 0:
        if started:
            # This worker's part is done (rank 0 writes every file). Leaving through the
            # interpreter's normal shutdown sometimes aborted it ("terminate called without
            # an active exception", SIGABRT from a C++ thread still joinable at exit), which
            # torchrun reports as a failed job; exit at once instead.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return
    # evaluation is local: rank 0 alone, after the group is gone (no collective waits on it)
    mean, std = pc.rl.evaluate(agent, n_episodes=args.eval_episodes, seed=10_000)
    print(
        f"{args.algorithm} on {args.env}: {agent.num_timesteps} steps, evaluation return "
        f"{mean:.2f} ± {std:.2f} over {args.eval_episodes} episodes; saved in {args.out}"
    )


def _train(args: argparse.Namespace) -> pc.rl.OnPolicyAgent:
    import torch.distributed as dist

    main = not dist.is_initialized() or dist.get_rank() == 0
    out = Path(args.out)
    algorithm = pc.rl.ALGORITHMS[args.algorithm]
    checkpoint = out / "checkpoint.pt"
    resume_from = None
    if args.resume:
        # the stopped run's own settings and length; flags cannot change a run midway
        if not checkpoint.exists() or not (out / RUN_FILE).exists():
            raise SystemExit(f"--resume: no checkpoint and {RUN_FILE} in {out}")
        run = json.loads((out / RUN_FILE).read_text())
        if (run["algorithm"], run["env"]) != (args.algorithm, args.env):
            raise SystemExit(f"--resume: {out} is a run of {run['algorithm']} on {run['env']}")
        settings, total_steps = run["settings"], int(run["total_steps"])
        resume_from = checkpoint
    else:
        settings = _settings(args)
        total_steps = int(settings.pop("total_steps"))
        if main:
            out.mkdir(parents=True, exist_ok=True)
            world = dist.get_world_size() if dist.is_initialized() else 1
            (out / RUN_FILE).write_text(json.dumps({
                "algorithm": args.algorithm, "env": args.env, "total_steps": total_steps,
                "settings": settings, "processes": world, "command": " ".join(sys.argv),
            }, indent=2))  # fmt: skip
    agent = algorithm(args.env, **settings)
    checkpoint_every = args.checkpoint_every or max(total_steps // 10, 1)
    return agent.learn(total_steps, progress_bar=not args.no_progress, log_dir=out,
                       checkpoint_every=checkpoint_every, resume_from=resume_from)  # fmt: skip


def evaluate(args: argparse.Namespace) -> None:
    model = Path(args.run) / "model.pt"
    if not model.exists():
        raise SystemExit(f"{args.run} holds no model.pt: train it first (probcalc train)")
    agent = pc.rl.load(model)
    mean, std = pc.rl.evaluate(agent, n_episodes=args.episodes, deterministic=not args.stochastic,
                               seed=args.seed)  # fmt: skip
    print(
        f"{args.run}: return {mean:.2f} ± {std:.2f} over {args.episodes} episodes "
        f"({agent.num_timesteps} training steps)"
    )


def plot(args: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit("probcalc plot needs matplotlib: pip install matplotlib") from error
    run = Path(args.run)
    if not (run / "episodes.csv").exists():
        raise SystemExit(f"{run} holds no episodes.csv: is it a run folder of probcalc train?")
    with (run / "episodes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{run / 'episodes.csv'} has no finished episodes yet")
    steps = np.array([float(row["step"]) for row in rows])
    returns = np.array([float(row["episode_return"]) for row in rows])
    window = max(1, min(100, len(returns) // 10))
    smoothed = np.convolve(returns, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, returns, ".", alpha=0.3, markersize=3, label="episode return")
    axis.plot(steps[window - 1 :], smoothed, label=f"mean of {window} episodes")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    info = json.loads((run / RUN_FILE).read_text()) if (run / RUN_FILE).exists() else {}
    axis.set_title(f"{info.get('algorithm', '')} on {info.get('env', run.name)}")
    axis.legend()
    figure.tight_layout()
    output = Path(args.output) if args.output else run / "learning_curve.png"
    figure.savefig(output, dpi=120)
    print(f"wrote {output}")


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="probcalc", description=__doc__.split("\n\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train an agent")
    train_parser.add_argument("algorithm", choices=sorted(pc.rl.ALGORITHMS))
    train_parser.add_argument("--env", required=True, help="a registered Gymnasium id")
    train_parser.add_argument("--steps", type=int, help="environment steps (default: tuned)")
    train_parser.add_argument("--seed", type=int)
    train_parser.add_argument("--out", required=True, help="the run folder")
    train_parser.add_argument("--config", help="a TOML file of settings")
    train_parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting (repeatable), e.g. --set learning_rate=1e-3",
    )
    train_parser.add_argument(
        "--no-tuned", action="store_true", help="do not start from probcalc.rl.TUNED"
    )
    train_parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="steps between checkpoints (default: a tenth of the run)",
    )
    train_parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    train_parser.add_argument("--eval-episodes", type=int, default=10)
    train_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a collective may wait under torchrun before the job fails",
    )
    train_parser.set_defaults(handler=train)
    evaluate_parser = commands.add_parser("evaluate", help="evaluate a trained run")
    evaluate_parser.add_argument("run")
    evaluate_parser.add_argument("--episodes", type=int, default=10)
    evaluate_parser.add_argument("--seed", type=int, default=0)
    evaluate_parser.add_argument(
        "--stochastic", action="store_true", help="draw actions instead of using the policy's mean"
    )
    evaluate_parser.set_defaults(handler=evaluate)
    plot_parser = commands.add_parser("plot", help="plot a run's learning curve (PNG)")
    plot_parser.add_argument("run")
    plot_parser.add_argument("--output", help="default: RUN/learning_curve.png")
    plot_parser.set_defaults(handler=plot)
    return main_parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
