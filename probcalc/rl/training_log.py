"""What a training run writes to its folder: ``progress.csv`` (one row per update, or per
1,000 steps for the off-policy algorithms, whose metrics it averages: step,
time, steps per second, recent mean return, losses), ``episodes.csv`` (one row per finished
episode: step, return, length), and TensorBoard scalars when the tensorboard package is
installed. On resume the rows written after the checkpoint's step are dropped, so a resumed
run's logs read as if it had never stopped."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = ["RunReport", "TrainingLog"]

PROGRESS = "progress.csv"
EPISODES = "episodes.csv"
EPISODE_FIELDS = ("step", "episode_return", "episode_length")


def _truncate(path: Path, after_step: int) -> None:
    """Drop the rows of a CSV file whose step is past ``after_step``."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if int(float(row[0])) <= after_step]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept)


class TrainingLog:
    """CSV (and TensorBoard) logs of a run in ``folder``.

    Args:
        folder: created if missing.
        resume_step: when resuming, the checkpoint's step: later rows are dropped and new
            rows are appended; None starts the files afresh.
    """

    def __init__(self, folder: str | Path, resume_step: int | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.progress_path, self.episodes_path = self.folder / PROGRESS, self.folder / EPISODES
        if resume_step is None:
            for path in (self.progress_path, self.episodes_path):
                path.unlink(missing_ok=True)
        else:
            for path in (self.progress_path, self.episodes_path):
                _truncate(path, resume_step)
        self._progress_fields: list[str] | None = None
        if self.progress_path.exists() and self.progress_path.stat().st_size > 0:
            with self.progress_path.open(newline="") as handle:
                self._progress_fields = next(csv.reader(handle))
        self.tensorboard = None
        try:  # optional: torch's SummaryWriter needs the tensorboard package
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))
        except ImportError:
            pass

    def episodes(self, rows: list[tuple[int, float, int]]) -> None:
        """Append finished episodes (step, return, length)."""
        if not rows:
            return
        new = not self.episodes_path.exists()
        with self.episodes_path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(EPISODE_FIELDS)
            writer.writerows(rows)
        if self.tensorboard is not None:
            for step, episode_return, length in rows:
                self.tensorboard.add_scalar("episode/return", episode_return, step)
                self.tensorboard.add_scalar("episode/length", length, step)

    def progress(self, row: dict[str, Any]) -> None:
        """Append one update's metrics; the first row fixes the columns (``step`` first)."""
        if self._progress_fields is None:
            self._progress_fields = list(row)
            with self.progress_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self._progress_fields)
        with self.progress_path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(field, "") for field in self._progress_fields])
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"train/{name}", value, row["step"])

    def close(self) -> None:
        """Close the TensorBoard writer (the CSV files are closed after every write)."""
        if self.tensorboard is not None:
            self.tensorboard.close()


class RunReport:
    """What learn() shows and writes while it runs: a tqdm bar (with the recent mean
    return) and, with a log folder, a :class:`TrainingLog`. Only the process that reports
    (rank 0) draws the bar or writes.

    Args:
        log_dir: the log folder, or None.
        resume_step: the checkpoint's step when resuming (see :class:`TrainingLog`).
        reports: whether this process reports.
        progress_bar: whether to draw the bar.
        total: the steps the bar counts to.
        done: the steps of the run already made (a resumed run's).
    """

    def __init__(
        self,
        log_dir: str | Path | None,
        resume_step: int | None,
        *,
        reports: bool,
        progress_bar: bool,
        total: int,
        done: int,
    ) -> None:
        self.log = TrainingLog(log_dir, resume_step) if log_dir is not None and reports else None
        self.bar = tqdm(
            total=total,
            initial=done,
            unit="step",
            unit_scale=True,
            disable=not (progress_bar and reports),
            dynamic_ncols=True,
        )
        self._clock = time.perf_counter()

    def row(
        self,
        step: int,
        steps_made: int,
        mean_return: float,
        episodes: int,
        learning_rate: float,
        metrics: dict[str, float],
    ) -> dict[str, Any]:
        """The progress row of an update: step, time, steps per second (over the
        ``steps_made`` since the report started), recent mean return, the number of
        episodes finished, the learning rate and the algorithm's metrics."""
        elapsed = time.perf_counter() - self._clock
        return {
            "step": step,
            "time": elapsed,
            "steps_per_second": steps_made / elapsed,
            "mean_return": mean_return,
            "episodes": episodes,
            "learning_rate": learning_rate,
            **metrics,
        }

    def write(
        self,
        row: dict[str, Any],
        episodes: list[tuple[int, float, int]],
        rollout_steps: int,
        *,
        progress: bool = True,
    ) -> None:
        """Write the finished ``episodes`` and, with ``progress``, ``row``; advance the
        bar."""
        if self.log is not None:
            self.log.episodes(episodes)
            if progress:
                self.log.progress(row)
        self.bar.update(rollout_steps)
        if not math.isnan(row["mean_return"]):
            self.bar.set_postfix_str(f"mean return {row['mean_return']:.4g}", refresh=False)

    def close(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()
