"""The conformance check (docs/protocol.md): a real `python -m cellkit run` pointed at it passes; a
deliberately broken forwarder is named for at least five distinct rules, each in one line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellkit.adapters.clock import SystemClock
from cellkit.adapters.conformance_edge import ConformanceEdge
from cellkit.adapters.sqlite import SqliteStore
from cellkit.cli import app
from cellkit.core.signing import body_headers
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def edge() -> Iterator[tuple[ConformanceEdge, str]]:
    fake = ConformanceEdge(SECRET)
    url = fake.start(0)
    yield fake, url
    fake.stop()


def test_the_cell_kit_conforms(tmp_path: Path, edge: tuple[ConformanceEdge, str]) -> None:
    fake, url = edge
    db = tmp_path / "cell.db"
    store = SqliteStore(str(db))
    ticker = Ticker(store, "cell-c", "w1", SystemClock(), logging.getLogger("cellkit.test.conformance"))
    for i, mb in enumerate((1024, 4096, 8192)):
        ticker.start(f"s{i}", "org-c", "pro", mb, 1, SystemClock().now_us())
    store.close()
    env = os.environ | {"CELL_ID": "cell-c", "WORKER_ID": "w1", "CELL_DATABASE_URL": f"sqlite://{db}",
                        "EDGE_URL": url, "EVENT_SECRET": SECRET, "PRO_BILLING_AUTHORITY": "edge",
                        "TICK_SECONDS": "0.05", "FORWARD_IDLE_SECONDS": "0.05", "STATUS_SECONDS": "0.5",
                        "BILLERS_SECONDS": "3600"}
    env.pop("OPENSANDBOX_USAGE_PARITY_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "cellkit", "run", "--seconds", "60"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 45
        while not fake.observer.complete and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # keep watching a while: nothing accepted or refused may come back
    finally:
        proc.send_signal(signal.SIGKILL)  # the wire is what is judged; a kill is the quickest stop
        proc.wait(timeout=30)
    assert fake.observer.complete, fake.violations()
    assert [v.line() for v in fake.violations()] == []


def tick(sid: str, end: str, interval: Any = 1, eid: str | None = None, **extra: Any) -> dict[str, Any]:
    env = {"id": eid or f"cell-x:{sid}:{end}", "type": "usage_tick", "sandbox_id": sid, "org_id": "o", "plan": "pro",
           "worker_id": "w", "cell_id": "cell-x", "payload": {"memory_mb": 1024, "interval_s": interval},
           "timestamp": f"2026-12-01T00:00:{end}Z"}
    return env | extra


def post(url: str, batch: list[Any], signed: bool = True) -> int:
    body = json.dumps(batch).encode()
    headers = {"Content-Type": "application/json", "X-Cell-Id": "cell-x"}
    if signed:
        headers |= body_headers(SECRET, int(time.time()), body)
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/ingest", body, headers)) as res:
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_broken_forwarder_is_named_for_each_rule_it_breaks(edge: tuple[ConformanceEdge, str]) -> None:
    fake, url = edge
    assert post(url, [tick("a", "01"), tick("a", "02")], signed=False) == 202  # unsigned
    bad = [tick("a", "05", interval=2),  # overlaps: a ended at :02, this claims :03-:05... then a gap
           tick("b", "10", interval=4000),  # longer than the hour cap
           {"id": "half", "type": "usage_tick"},  # keys missing
           tick("a", "02", interval=5)]  # a's id at :02 again, another envelope
    assert post(url, bad) == 503
    assert post(url, [tick("c", "01"), tick("c", "02")]) == 413  # not the 503 batch again
    assert post(url, [tick("c", "01"), tick("c", "02")]) == 401  # the 413 batch, not split
    huge = [tick("d", f"{i % 60:02d}", eid=f"d{i}") for i in range(1001)]
    assert post(url, huge) == 400  # too big, and not the 401 batch first
    post(url, huge)  # a 400 batch again
    found = fake.violations()
    rules = {v.rule for v in found}
    assert {"signature", "tiling", "interval", "envelope", "id", "answer-503", "answer-413", "answer-401",
            "batch-limit", "answer-400"} <= rules, rules
    assert all("\n" not in v.line() for v in found)


def test_the_command_prints_one_line_per_violation_and_fails() -> None:
    # In this process (the command starts the same server and thread): `python -m cellkit` itself is
    # test_cli.py's test_module_help; a process here cost ~0.3 CPU-s of imports.
    out = CliRunner().invoke(app, ["conformance", "--seconds", "0.5", "--port", "0", "--secret", SECRET,
                                   "--linger", "0"])
    assert out.exit_code == 1 and out.stdout.startswith("incomplete: 0 ingest request(s)"), out.output
    assert "listening on http://127.0.0.1:" in out.stderr
