"""Shutdown against a failing edge: bounded in time, a handful of requests at most (issue 18, item 6).

The whole runtime (every loop on its thread, the real HTTP client and a real-socket edge) runs in this
process; `stop` is what the SIGTERM handler sets.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.memory import MemoryStore
from cellkit.adapters.sqlite import SqliteStore
from cellkit.bootstrap import build, run
from cellkit.core.usage import OrgRow
from cellkit.ports import Billable, SendResult, SpoolItem
from cellkit.services.billers import Billers, BillingConfig, Sender
from cellkit.settings import load
from tests.cellkit.conftest import SECRET, Captured
from tests.cellkit.fake_edge import FakeEdge


class NoStripe:
    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult:
        return SendResult("retry", "not in this test")


def _run_until_stopped(tmp_path: Path, edge: FakeEdge, log: logging.Logger, requests: int,
                       **env: str) -> tuple[float, int, str | None]:
    """Start a cell with a spool to send, wait for its first requests, stop it: (seconds to stop, requests
    after, the spool's lease holder after)."""
    settings = load({"CELL_ID": "cell-s", "EDGE_URL": edge.url, "EVENT_SECRET": SECRET, "STATUS_SECONDS": "3600",
                     "BILLERS_SECONDS": "3600", "FORWARD_IDLE_SECONDS": "0.05"} | env)
    store = SqliteStore(str(tmp_path / "cell.db"))
    store.spool_put([SpoolItem(f"e{i}", json.dumps({"id": f"e{i}"})) for i in range(20)])
    cell = build(settings, log, store=store, stripe=NoStripe())
    stop = threading.Event()
    runner = threading.Thread(target=run, args=(cell, stop), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while len(edge.state.ingest_at) < requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(edge.state.ingest_at) >= requests, "the forwarder never reached the edge"
    stopped_at = time.monotonic()
    stop.set()
    runner.join(15)
    took = time.monotonic() - stopped_at
    assert not runner.is_alive(), "run() did not return within 15 s of the stop"
    after = sum(1 for at in edge.state.ingest_at if at > stopped_at)
    assert store.spool_depth() == 20  # nothing lost: every envelope waits for the next start
    holder = store.lease_holder("forwarder")
    store.close()
    return took, after, holder


@pytest.fixture
def edge() -> Any:
    """On the system clock (the runtime signs with it)."""
    fake = FakeEdge(SECRET)
    yield fake
    fake.stop()


def test_shutdown_against_a_503_edge_is_prompt_and_quiet(
    tmp_path: Path, edge: FakeEdge, log: tuple[logging.Logger, Captured]
) -> None:
    edge.state.always = ("status", 503)
    took, after, holder = _run_until_stopped(tmp_path, edge, log[0], 2)
    # Before the fix: the backoff's sleep returned at once once stopping and drain() went on, ~1,000 POSTs.
    assert took < 2 and after <= 1, (took, after)
    assert log[1].events("cell_stopped") and not log[1].events("shutdown_left_loops")
    assert holder is None  # a clean stop releases the spool's lease: another process takes over at once


def test_shutdown_against_a_hanging_edge_is_bounded(
    tmp_path: Path, edge: FakeEdge, log: tuple[logging.Logger, Captured]
) -> None:
    edge.state.always = ("hang", 30)
    # A request hangs for EDGE_TIMEOUT_SECONDS (10 s); run() leaves it after SHUTDOWN_SECONDS.
    took, after, holder = _run_until_stopped(tmp_path, edge, log[0], 1, SHUTDOWN_SECONDS="1", EDGE_TIMEOUT_SECONDS="10",
                                     FORWARD_BATCH="10")
    assert took < 3 and after <= 1, (took, after)
    (left,) = log[1].events("shutdown_left_loops")
    assert left.loops == ["forwarder"]  # type: ignore[attr-defined]
    assert holder is not None and holder.split(":")[2] == "worker-1"  # still in a request: the lease stays


def test_the_stripe_rate_limit_wait_ends_at_stop(log: tuple[logging.Logger, Captured]) -> None:
    calls: list[str] = []

    class RateLimited:
        def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult:
            calls.append(identifier)
            return SendResult("rate_limited", "slow down", 30.0)

    store = MemoryStore()
    store.put_org(OrgRow("o", "pro", "unified", "cus_o"))
    store.put_billable([Billable(f"id{i}", "o", 0, "m", Decimal(1)) for i in range(3)])
    sender = Sender(store, ManualClock(0), BillingConfig("cell-s"), log[0], RateLimited())
    stop = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # SIGTERM arrives during the first wait
        waits.append(seconds)
        stop.set()

    Billers("cell", [sender], log[0], "cell-s").bind_stop(stop, sleep)
    assert sender.run_once() == 0
    assert calls == ["id0"] and waits == [10.0]  # before the fix: 5 calls per row, every row
    assert store.count_billable("pending") == 3


@pytest.mark.slow
def test_sigterm_against_a_failing_edge_ends_within_15_s(tmp_path: Path) -> None:
    """The real process with its default timeouts: SIGTERM while the edge 503s, then while it hangs."""
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    for fault in (("status", 503), ("hang", 60)):
        edge = FakeEdge(SECRET)
        edge.state.always = fault
        db = tmp_path / f"{fault[0]}.db"
        store = SqliteStore(str(db))
        store.spool_put([SpoolItem(f"e{i}", json.dumps({"id": f"e{i}"})) for i in range(5)])
        store.close()
        env: dict[str, Any] = os.environ | {"CELL_ID": "cell-t", "CELL_DATABASE_URL": f"sqlite://{db}",
                                            "EDGE_URL": edge.url, "EVENT_SECRET": SECRET,
                                            "PRO_BILLING_AUTHORITY": "edge", "FORWARD_IDLE_SECONDS": "0.05"}
        env.pop("OPENSANDBOX_USAGE_PARITY_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "cellkit", "run"], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while len(edge.state.ingest_at) < 2 and time.monotonic() < deadline and fault[0] == "status":
                time.sleep(0.02)
            while not edge.state.ingest_at and time.monotonic() < deadline:
                time.sleep(0.02)
            assert edge.state.ingest_at, "the cell never reached the edge"
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            took = time.monotonic() - sent_at
            after = sum(1 for at in edge.state.ingest_at if at > sent_at)
            assert proc.returncode == 0 and took < 15 and after <= 2, (fault, took, after, proc.stderr)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            edge.stop()
