"""A test run has no side effects outside pytest's temp dirs: one test file run alone starts no packaging
and leaves `git status` as it found it; the moto patches refuse a moto they were not checked against."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.moto_patches import check_version

ROOT = Path(__file__).resolve().parents[2]
# pytest in a child process that reports each process it (or a thread of it) starts: an audit hook sees
# every subprocess, and the threads it left are given time to start theirs before the report.
CHILD = """
import sys, threading, pytest
started = []
sys.addaudithook(lambda event, args: started.append(repr(args[1])) if event == "subprocess.Popen" else None)
code = pytest.main(sys.argv[1:])
for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join(30)
print("STARTED", [s for s in started if "chalice" in s])
sys.exit(code)
"""


def git_status() -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return sorted(out.stdout.splitlines())


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_single_test_file_leaves_the_checkout_clean_and_packages_nothing(tmp_path: Path) -> None:
    before, deployments = git_status(), listing(ROOT / ".chalice" / "deployments")
    basetemp, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    # Without the parent run's coverage and xdist variables: the child is a developer's plain `pytest FILE`.
    parents = ("SLIPCOVER_", "PYTEST_", "EDGE_BILLING_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(parents)}
    env["TMPDIR"] = str(tmp)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, "tests/integration/routes/test_ops_routes.py", "-q", "-p", "no:randomly",
         f"--basetemp={basetemp}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "STARTED []" in run.stdout, run.stdout[-2000:]
    assert git_status() == before
    assert listing(ROOT / ".chalice" / "deployments") == deployments  # ignored by git, still the checkout
    assert not [*basetemp.rglob("chalice-package*"), *tmp.rglob("chalice-package*")], "it packaged the app"


def test_the_moto_patches_check_motos_version() -> None:
    check_version("5.2.6")
    for version in ("4.2.14", "6.0.0"):
        with pytest.raises(RuntimeError, match="moto_patches"):
            check_version(version)
