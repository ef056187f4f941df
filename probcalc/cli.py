"""The ``probcalc`` command: train, evaluate and plot policy-gradient runs.

    probcalc train ppo --env Pendulum-v1 --steps 100000 --seed 0 --out runs/pendulum
    probcalc evaluate runs/pendulum
    probcalc plot runs/pendulum

Settings, each layer overriding the one before: the algorithm's defaults, the tuned
settings for the task (probcalc.rl.TUNED; ``--no-tuned`` skips them), a TOML file
(``--config``), then ``--set key=value`` flags (values read as TOML: 1e-3, true, "linear").
A run folder holds run.json (what was run), progress.csv, episodes.csv, checkpoint.pt and
model.pt; ``--resume`` continues a stopped run from its checkpoint, with the settings and
length recorded in run.json (other flags are ignored then). A folder that holds a run is
not trained into again without ``--resume`` or ``--overwrite`` (which removes the old run's
files, and only those). ``--threads`` (default 1) sets torch's thread count: the networks
are small, and more threads than one slow them down.

Bad input (an unknown setting or environment, a value of the wrong type, an unreadable
config file or checkpoint, an action space the algorithm cannot use) is reported in one
line with exit status 2 before anything is written; errors during training keep their
traceback.

Data-parallel training: launched by torchrun, each process is a rank that steps its own
environments (``n_envs`` each), and ``--steps`` counts the steps of all of them:

    torchrun --nproc_per_node=2 -m probcalc train ppo --env Pendulum-v1 --steps 100000 \
        --out runs/ddp

The process group is gloo (the networks live on the CPU), with ``--timeout`` seconds for a
collective; rank 0 alone writes the run folder and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import json
import os
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import gymnasium
import numpy as np
import torch

import probcalc as pc
from probcalc.core import distributed
from probcalc.rl.agent import CHECKPOINT, MODEL
from probcalc.rl.config import DTYPES
from probcalc.rl.settings import check_settings, settings
from probcalc.rl.training_log import EPISODES, PROGRESS
from probcalc.rl.vector import registered

RUN_FILE = "run.json"
CURVE = "learning_curve.png"
TENSORBOARD = "tensorboard"  # the folder of TrainingLog's TensorBoard events
# the files that make a folder a run (refused without --resume or --overwrite)
RUN_MARKERS = (RUN_FILE, CHECKPOINT, MODEL)
# what a run writes: all that --overwrite removes (with TensorBoard's event files)
RUN_FILES = (RUN_FILE, PROGRESS, EPISODES, CHECKPOINT, MODEL, CURVE)
# settings the command does not take: each rank of a torchrun job trains in the job's group
NOT_FROM_THE_COMMAND = ("group",)
# bad input, reported in one line with exit status 2 (TOML and JSON decode errors are
# ValueErrors); errors while training keep their traceback
INPUT_ERRORS = (pc.ProbcalcError, ValueError, TypeError, OSError, gymnasium.error.Error)

T = TypeVar("T")


def _fail(error: BaseException | str) -> NoReturn:
    """Report bad input as argparse does: one line on stderr, exit status 2."""
    message = " ".join(str(error).split()) or type(error).__name__
    # one write: the lines of several torchrun ranks sharing a pipe stay whole
    sys.stderr.write(f"probcalc: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)


@contextlib.contextmanager
def _input_errors() -> Iterator[None]:
    try:
        yield
    except INPUT_ERRORS as error:
        _fail(error)


def _on_every_rank(group: distributed.Group | bool, step: Callable[[], T]) -> T:
    """A set-up step every rank takes: an input error on any rank stops every rank with
    exit status 2 (a rank whose own step succeeded says that another one failed)."""
    error = None
    try:
        result = step()
    except INPUT_ERRORS as caught:
        error = caught
    if distributed.any_across(error is not None, group):
        _fail(error if error is not None else "another process of the job failed to start")
    return result


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _set_threads(threads: int) -> None:
    """torch's intra-op threads (and inter-op threads while torch still allows it)."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # once set, or after parallel work started
        torch.set_num_interop_threads(threads)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string such as linear or mlp


def _checked(algorithm: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` with names and types checked against the algorithm's settings (plus
    total_steps; dtype by name, as TOML and run.json hold it), the error naming
    ``source``."""
    known = {
        name: annotation
        for name, (annotation, _) in settings(algorithm).items()
        if name not in NOT_FROM_THE_COMMAND
    }
    known["total_steps"] = int
    known["dtype"] = str
    values = {str(name).replace("-", "_"): value for name, value in values.items()}
    try:
        checked = check_settings(algorithm, values, known)
        if "dtype" in checked and checked["dtype"] not in DTYPES:
            raise ValueError(f"unknown dtype {checked['dtype']!r}; valid: {', '.join(DTYPES)}")
        return checked
    except (TypeError, ValueError) as error:
        raise type(error)(f"{source}: {error}") from None


def _agent_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The command's settings as the constructor takes them (dtype a torch.dtype)."""
    if "dtype" in settings:
        return {**settings, "dtype": DTYPES[settings["dtype"]]}
    return settings


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ValueError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {path}: not valid TOML: {error}") from None


def _settings(args: argparse.Namespace, algorithm: type) -> tuple[dict[str, Any], int]:
    """The constructor settings and the step budget: the tuned settings, the TOML file,
    the --set flags, --seed and --steps, each layer checked."""
    settings: dict[str, Any] = {}
    if not args.no_tuned:
        settings = pc.rl.tuned(args.algorithm, args.env)
        budget = pc.rl.tuned_steps(args.algorithm, args.env)
        if budget is not None:
            settings["total_steps"] = budget
    if args.config is not None:
        settings.update(_checked(algorithm, _read_config(args.config), f"--config {args.config}"))
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--set takes key=value, got {item!r}")
        pair = {key.strip(): _parse_value(value.strip())}
        settings.update(_checked(algorithm, pair, f"--set {item}"))
    if args.seed is not None:
        settings["seed"] = args.seed
    if args.steps is not None:
        settings["total_steps"] = args.steps
    if "total_steps" not in settings:
        raise ValueError(f"no tuned step budget for {args.algorithm} on {args.env}: give --steps")
    total_steps = settings.pop("total_steps")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    return settings, total_steps


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A checked training command: what to build and how long to run."""

    settings: dict[str, Any]
    total_steps: int
    threads: int
    resume_from: Path | None


def _plan(args: argparse.Namespace, algorithm: type) -> _Plan:
    """Check the command's input, touching no file: the environment id, the run folder
    and the settings."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if args.resume:
        # the stopped run's own settings and length; flags cannot change a run midway
        run_file, checkpoint = out / RUN_FILE, out / CHECKPOINT
        if not checkpoint.exists() or not run_file.exists():
            raise ValueError(f"--resume: no {CHECKPOINT} and {RUN_FILE} in {out}")
        try:
            run = json.loads(run_file.read_text())
            recorded = (run["algorithm"], run["env"], run["settings"], int(run["total_steps"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{run_file} is not a run file of probcalc train ({error!r})"
            ) from None
        name, env, settings, total_steps = recorded
        if (name, env) != (args.algorithm, args.env):
            raise ValueError(
                f"--resume: {out} is a run of {name} on {env}, not of "
                f"{args.algorithm} on {args.env}"
            )
        threads = args.threads or int(run.get("threads", 1))
        return _Plan(_checked(algorithm, settings, str(run_file)), total_steps, threads, checkpoint)
    try:  # gymnasium's own message, with its "did you mean"
        registered(args.env)
    except ValueError as error:
        raise ValueError(f"--env {args.env}: {error}") from None
    held = [name for name in RUN_MARKERS if (out / name).exists()]
    if held and not args.overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(held)}): --resume continues "
            f"it, --overwrite replaces it"
        )
    settings, total_steps = _settings(args, algorithm)
    return _Plan(settings, total_steps, args.threads or 1, None)


def _remove_run(out: Path) -> None:
    """Remove the files a run of probcalc train wrote in ``out``, and no other."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in (CHECKPOINT, MODEL):  # a save interrupted while writing
        for partial in out.glob(f"{name}.*.partial"):
            partial.unlink(missing_ok=True)
    board = out / TENSORBOARD
    if board.is_dir():
        for events in board.glob("events.out.tfevents.*"):
            events.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # kept if it holds anything else
            board.rmdir()


def _write_run(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Write run.json in ``out`` (after --overwrite removed the old run's files); a failure
    removes the folders this call created."""
    if overwrite and out.is_dir():
        _remove_run(out)
    created = None  # the outermost folder made here
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_FILE).write_text(json.dumps(record, indent=2))
    except BaseException:
        if created is not None:
            import shutil

            shutil.rmtree(created, ignore_errors=True)
        else:
            (out / RUN_FILE).unlink(missing_ok=True)
        raise


def train(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    algorithm = pc.rl.ALGORITHMS[args.algorithm]
    with _input_errors():  # every rank checks the same input: all fail alike
        plan = _plan(args, algorithm)
    _set_threads(plan.threads)
    started = _join_process_group(args.timeout)
    failed = None
    try:
        agent = _train(args, algorithm, plan)
        if started:  # leave together: gloo aborts a process torn down while a peer works on
            dist.barrier()
    except SystemExit as stop:  # a failed start, already reported
        failed = stop
    finally:
        if started:
            dist.destroy_process_group()
    if failed is not None or agent.rank != 0:
        if started:
            # This worker's part is done (rank 0 writes every file). Leaving through the
            # interpreter's normal shutdown sometimes aborted it ("terminate called without
            # an active exception", SIGABRT from a C++ thread still joinable at exit), which
            # torchrun reports as a failed job; exit at once instead.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0 if failed is None else failed.code)
        if failed is not None:
            raise failed
        return
    # evaluation is local: rank 0 alone, after the group is gone (no collective waits on it)
    mean, std = pc.rl.evaluate(agent, n_episodes=args.eval_episodes, seed=10_000)
    print(
        f"{args.algorithm} on {args.env}: {agent.num_timesteps} steps, evaluation return "
        f"{mean:.2f} ± {std:.2f} over {args.eval_episodes} episodes; saved in {args.out}"
    )


def _train(args: argparse.Namespace, algorithm: type, plan: _Plan) -> pc.rl.OnPolicyAgent:
    """Build the agent, then (rank 0) write run.json, then learn. Input errors while
    building or writing exit with status 2 on every rank and leave no new folder; errors
    while learning keep their traceback, except an unreadable checkpoint to resume from."""
    import torch.distributed as dist

    out = Path(args.out)
    group = distributed.active_group()
    agent = _on_every_rank(group, lambda: algorithm(args.env, **_agent_settings(plan.settings)))
    if plan.resume_from is None:
        # the seed the agent drew when none was given: a resumed run takes the same
        settings = {**plan.settings, "seed": agent.config.seed}
        record = {
            "algorithm": args.algorithm,
            "env": args.env,
            "total_steps": plan.total_steps,
            "settings": settings,
            "threads": plan.threads,
            "processes": dist.get_world_size() if dist.is_initialized() else 1,
            "command": " ".join(sys.argv),
        }
        _on_every_rank(
            group, lambda: _write_run(out, record, args.overwrite) if agent.rank == 0 else None
        )
    checkpoint_every = args.checkpoint_every or max(plan.total_steps // 10, 1)
    try:
        return agent.learn(
            plan.total_steps,
            progress_bar=not args.no_progress,
            log_dir=out,
            checkpoint_every=checkpoint_every,
            resume_from=plan.resume_from,
        )
    except pc.CheckpointError as error:  # the stopped run's checkpoint cannot be read
        _fail(error)


def _join_process_group(timeout: float) -> bool:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join the process group, gloo
    with a timeout on every collective. Whether this call started it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    return True


def evaluate(args: argparse.Namespace) -> None:
    with _input_errors():
        model = Path(args.run) / MODEL
        if not model.exists():
            raise ValueError(f"{args.run} holds no {MODEL}: train it first (probcalc train)")
        _set_threads(args.threads)
        agent = pc.rl.load(model)
    mean, std = pc.rl.evaluate(
        agent, n_episodes=args.episodes, deterministic=not args.stochastic, seed=args.seed
    )
    print(
        f"{args.run}: return {mean:.2f} ± {std:.2f} over {args.episodes} episodes "
        f"({agent.num_timesteps} training steps)"
    )


def plot(args: argparse.Namespace) -> None:
    with _input_errors():
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ValueError("probcalc plot needs matplotlib: pip install matplotlib") from None
        run = Path(args.run)
        if not (run / EPISODES).exists():
            raise ValueError(f"{run} holds no {EPISODES}: is it a run folder of probcalc train?")
        try:
            with (run / EPISODES).open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            steps = np.array([float(row["step"]) for row in rows])
            returns = np.array([float(row["episode_return"]) for row in rows])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{run / EPISODES} is not an episode log of probcalc train ({error!r})"
            ) from None
        if not rows:
            raise ValueError(f"{run / EPISODES} has no finished episodes yet")
        info = json.loads((run / RUN_FILE).read_text()) if (run / RUN_FILE).exists() else {}
        info = info if isinstance(info, dict) else {}
    window = max(1, min(100, len(returns) // 10))
    smoothed = np.convolve(returns, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, returns, ".", alpha=0.3, markersize=3, label="episode return")
    axis.plot(steps[window - 1 :], smoothed, label=f"mean of {window} episodes")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    axis.set_title(f"{info.get('algorithm', '')} on {info.get('env', run.name)}")
    axis.legend()
    figure.tight_layout()
    output = Path(args.output) if args.output else run / CURVE
    with _input_errors():
        figure.savefig(output, dpi=120)
    print(f"wrote {output}")


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="probcalc", description=__doc__.split("\n\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train an agent")
    train_parser.add_argument("algorithm", choices=sorted(pc.rl.ALGORITHMS))
    train_parser.add_argument("--env", required=True, help="a registered Gymnasium id")
    train_parser.add_argument(
        "--steps", type=_positive_int, help="environment steps (default: tuned)"
    )
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
        type=_positive_int,
        help="steps between checkpoints (default: a tenth of the run)",
    )
    existing = train_parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its run.json, logs, checkpoint, model, plot and "
        "TensorBoard events are removed; other files stay)",
    )
    train_parser.add_argument(
        "--threads",
        type=_positive_int,
        help="torch threads per process (default 1: small networks run fastest on one; "
        "on --resume the run's own)",
    )
    train_parser.add_argument("--eval-episodes", type=_positive_int, default=10)
    train_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        help="seconds a collective may wait under torchrun before the job fails",
    )
    train_parser.set_defaults(handler=train)
    evaluate_parser = commands.add_parser("evaluate", help="evaluate a trained run")
    evaluate_parser.add_argument("run")
    evaluate_parser.add_argument("--episodes", type=_positive_int, default=10)
    evaluate_parser.add_argument(
        "--threads", type=_positive_int, default=1, help="torch threads (default 1)"
    )
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
