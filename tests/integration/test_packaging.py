"""The operator CLI installs as `edge-billing`, and its own dependencies stay out of the Lambda bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_console_script_is_the_same_program() -> None:
    script = Path(sys.executable).parent / "edge-billing"
    out = subprocess.run([str(script), "cutover", "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "drain-check" in out.stdout


def test_cli_only_dependencies_are_not_lambda_requirements() -> None:
    lambda_reqs = (ROOT / "requirements.txt").read_text().lower()
    assert "typer" not in lambda_reqs and "rich" not in lambda_reqs
    assert {"typer", "rich"} <= {line.split(">")[0] for line in (ROOT / "requirements-cli.txt").read_text().split()}
