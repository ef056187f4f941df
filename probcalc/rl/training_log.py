"""What a training run writes to its folder: ``progress.csv`` (one row per update: step,
time, steps per second, recent mean return, losses), ``episodes.csv`` (one row per finished
episode: step, return, length), and TensorBoard scalars when the tensorboard package is
installed. On resume the rows written after the checkpoint's step are dropped, so a resumed
run's logs read as if it had never stopped."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["TrainingLog"]

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
        """Append one update's figures; the first row fixes the columns (``step`` first)."""
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
        if self.tensorboard is not None:
            self.tensorboard.close()
