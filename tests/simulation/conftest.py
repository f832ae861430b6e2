"""How many scenarios ran and which faults they injected, summed over xdist workers, printed at the end.

Each worker hands its tally to the controller through xdist's `workeroutput`; without xdist the one
process's tally is printed. The summary also goes to out/simulation-summary.json (`make soak` shows it).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.simulation.engine import TALLY

SUMMARY = Path("out") / "simulation-summary.json"
_merged = {"scenarios": Counter[str](), "faults": Counter[str]()}


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: the controller sums
        output["sim_tally"] = json.dumps({"scenarios": TALLY.scenarios, "faults": TALLY.faults})
    else:
        _merged["scenarios"].update(TALLY.scenarios)
        _merged["faults"].update(TALLY.faults)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    tally = getattr(node, "workeroutput", {}).get("sim_tally")
    if tally:
        got = json.loads(tally)
        _merged["scenarios"].update(got["scenarios"])
        _merged["faults"].update(got["faults"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    scenarios, faults = _merged["scenarios"], _merged["faults"]
    if not scenarios:
        return
    write = terminalreporter.write_line
    per_module = ", ".join(f"{k} {v}" for k, v in sorted(scenarios.items()))
    write(f"simulation: {sum(scenarios.values())} scenarios ({per_module})")
    write(f"simulation: {sum(faults.values())} faults injected, by kind:")
    for kind, n in sorted(faults.items(), key=lambda kv: (-kv[1], kv[0])):
        write(f"  {kind:40s} {n:>8d}")
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps({"scenarios": scenarios, "faults": faults}, indent=2, sort_keys=True) + "\n")
