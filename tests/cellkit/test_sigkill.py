"""A real cell process (``python -m cellkit run``'s entry point, forked: forked_cell.py) SIGKILLed at random
moments and restarted.

It ticks three sandboxes every few milliseconds and forwards in small batches
to a fake edge that dedupes by envelope id. After the kills, the sandboxes are
stopped and the spool drained; then, per sandbox, the intervals the edge
counted (once per id) must add up to its running time to the microsecond: a
lost tick leaves a gap, a tick counted twice or re-planned under a new id
would overshoot.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from decimal import Decimal
from pathlib import Path

from cellkit.adapters.clock import SystemClock
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.process import holder_dead
from cellkit.adapters.sqlite import SqliteStore
from cellkit.core.timeutil import MICROS
from cellkit.services.forwarder import Forwarder
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import SECRET
from tests.cellkit.fake_edge import FakeEdge
from tests.cellkit.forked_cell import Zygote

KILLS = 8


def test_sigkill_at_random_points_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    edge = FakeEdge(SECRET)
    db = tmp_path / "cell.db"
    log = logging.getLogger("cellkit.test.sigkill")
    store = SqliteStore(str(db))
    ticker = Ticker(store, "cell-k", "w1", SystemClock(), log)
    starts = {}
    for i, mb in enumerate((1024, 4096, 8192)):
        starts[f"s{i}"] = ticker.start(f"s{i}", "org-k", "pro", mb, 1).at_us
    env = os.environ | {
        "CELL_ID": "cell-k", "WORKER_ID": "w1", "CELL_DATABASE_URL": f"sqlite://{db}", "EDGE_URL": edge.url,
        "EVENT_SECRET": SECRET, "PRO_BILLING_AUTHORITY": "edge", "TICK_SECONDS": "0.004",
        "FORWARD_BATCH": "7", "FORWARD_IDLE_SECONDS": "0.01", "STATUS_SECONDS": "3600", "BILLERS_SECONDS": "3600",
    }
    env.pop("OPENSANDBOX_USAGE_PARITY_URL", None)
    rng = random.Random(int(os.environ.get("CELLKIT_KILL_SEED", "20261130")))
    try:
        with Zygote(env) as zygote:  # each cell a fork of one process that imported the kit (forked_cell.py)
            for k in range(KILLS):
                pid = zygote.start(env)
                if k % 2:
                    # Every other kill waits until this process is forwarding (a loaded machine starts slowly),
                    # so kills land mid-work whatever the load; the others may land in start-up too.
                    seen = edge.state.ingest_requests
                    deadline = time.monotonic() + 20
                    while edge.state.ingest_requests < seen + 3 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0, 0.5))
                else:
                    time.sleep(rng.uniform(0.2, 1.6))
                os.kill(pid, signal.SIGKILL)
                assert zygote.ended() == -signal.SIGKILL
        assert edge.state.deliveries > 0, "the cell process never delivered anything before being killed"
        stop_at = SystemClock().now_us()
        for sid in starts:
            ticker.stop(sid, stop_at)
        client = EdgeClient(edge.url, SECRET, "cell-k", UrllibTransport(), SystemClock())
        Forwarder(store, client, SystemClock(), time.sleep, log, holder_dead=holder_dead).drain(max_posts=10_000)
        assert store.spool_depth() == 0 and store.aside() == []
        per_sandbox: dict[str, Decimal] = {sid: Decimal(0) for sid in starts}
        for envelope in edge.state.received.values():
            per_sandbox[envelope["sandbox_id"]] += envelope["payload"]["interval_s"]
        for sid, start in starts.items():
            assert per_sandbox[sid] == Decimal(stop_at - start) / MICROS, sid
        # Resends (a kill between a 202 and the delete) are allowed: the edge counts each id once.
        assert edge.state.deliveries >= len(edge.state.received) > 3 * KILLS
        print(f"ticks={len(edge.state.received)} deliveries={edge.state.deliveries}")
    finally:
        store.close()
        edge.stop()
