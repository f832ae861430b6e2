"""`make run-under-load`'s parts (sim/under_load.py): a command timed with its CPU, busy loops that stop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sim.under_load import busy_loops, stop, timed


def test_a_command_is_timed_with_its_exit_code_cpu_and_log(tmp_path: Path) -> None:
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint('done')"
    ok = timed("spin", [sys.executable, "-c", spin], tmp_path)
    assert ok.exit_code == 0 and ok.cpu_s >= 0.2 and ok.wall_s >= 0.2
    assert (tmp_path / "spin.log").read_text().strip() == "done"
    assert timed("fail", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path).exit_code == 3


def test_busy_loops_burn_cpu_until_stopped() -> None:
    loops = busy_loops(1)
    time.sleep(1.0)
    assert all(p.poll() is None for p in loops)
    assert stop(loops) > 0  # how much depends on what else runs: on a loaded machine a fraction of a core
    assert all(p.poll() is not None for p in loops)
