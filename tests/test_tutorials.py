"""The tutorials (jupytext percent scripts in docs/tutorials/, rendered as notebooks on the
docs site) run from top to bottom; each checks its own figures against closed forms or
scipy with asserts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.py"))


def test_there_are_at_least_three_tutorials():
    assert len(TUTORIALS) >= 3


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda path: path.stem)
def test_the_tutorial_runs(script, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Warning" not in run.stderr, run.stderr[-3000:]
