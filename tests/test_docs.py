"""The documentation: the site builds without a warning, and the README's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    mkdocs = pytest.importorskip("mkdocs")
    assert mkdocs is not None
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # griffe's warnings (a docstring naming a parameter the signature lacks) do not fail
    # mkdocs' strict mode by themselves: every one is a wrong line in the API reference
    warnings = [line for line in (run.stdout + run.stderr).splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "api" / "integrate" / "index.html").exists()


def test_every_page_of_the_docs_folder_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    missing = sorted(page for page in pages if page not in nav)
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_the_readme_stays_a_front_page_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= 8000, len(text)
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_readme_python_example_runs(monkeypatch, tmp_path):
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    # the same calls on a shorter training run and a scratch folder
    code = code.replace("100_000", "2_048").replace("20_000", "300")
    code = code.replace("runs/pendulum", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    la = namespace["la"]
    # the conjugate model's exact posterior: precision 1 + 4, mean sum(y) / 5
    assert float(la.mode) == pytest.approx(3.4 / 5, abs=1e-8)
    assert float(la.covariance) == pytest.approx(1 / 5, rel=1e-8)
    # NUTS and VI against the same closed-form posterior N(0.68, 0.2)
    draws = namespace["draws"]
    ess = float(draws.ess_bulk[0])
    assert abs(float(draws.samples.mean()) - 0.68) < 5 * (0.2 / ess) ** 0.5
    q = namespace["q"].distribution
    assert float(q.mean[0]) == pytest.approx(0.68, abs=0.05)
    assert float(q.covariance_matrix[0, 0]) == pytest.approx(0.2, rel=0.2)
