"""`make run` end to end: real processes (moto server, Stripe emulator, chalice local) on loopback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
# `make test-e2e` runs these one at a time, unloaded: they share .local/ and the local stage of .chalice/config.json.
def test_make_run_bills_the_simulated_fleet_exactly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.run", "--seconds", "24"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "every pro tick billed exactly once" in out
    assert "'quarantined': 2" in out, "the poison envelope and the unknown org are held, not dropped"
    assert re.search(r"stragglers: [1-9]", out), "a held-back batch was billed as deltas"
    assert "MISMATCH" not in out
    assert not (ROOT / ".local" / "stack.json").exists(), "the stack is torn down afterwards"
