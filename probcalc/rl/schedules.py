"""Schedules of the settings that decay over a learn() call: the learning rate (and
NaturalPG's KL radius)."""

from __future__ import annotations

__all__ = ["schedule_factor"]


def schedule_factor(schedule: str, progress_remaining: float) -> float:
    """The factor of a scheduled setting: 1 for "constant", the fraction of the run still
    to go (1 at the start, towards 0 at the end) for "linear"."""
    return progress_remaining if schedule == "linear" else 1.0
