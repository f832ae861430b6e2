"""A real PostgreSQL restarted in the middle of a running cell: the kit resumes by itself and loses nothing.

`python -m cellkit run`'s loops (ticker, forwarder, status) run on their own PostgreSQL server; the server is
stopped for a few seconds and started again while they run. Afterwards every sandbox's ticks, as the edge
received them, tile its scale events to the microsecond, and the cell was never restarted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cellkit.adapters.postgres import PostgresStore
from cellkit.bootstrap import build, run
from cellkit.settings import CellSettings
from tests.cellkit.conftest import SECRET, xdg_runtime_dir
from tests.cellkit.fake_edge import FakeEdge
from tests.cellkit.tiling import assert_ticks_tile

pytestmark = pytest.mark.slow


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_postgres_restart_mid_run_loses_nothing_and_needs_no_cell_restart(tmp_path: Path) -> None:
    xdg_runtime_dir()
    import pgserver
    from pgserver._commands import pg_ctl as run_pg_ctl

    pgdata = tmp_path / "pg"
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)  # this test stops and starts it itself
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]

    def pg_ctl(args: list[str]) -> None:
        # pg_ctl waits (-w) up to 120 s: pgserver's own start gives up after 10 s, too short on a loaded machine.
        run_pg_ctl(["-w", "-t", "120", *args], pgdata=pgdata, user=server.system_user, timeout=150)

    edge = FakeEdge(SECRET)
    settings = CellSettings(CELL_ID="cell-pg", WORKER_ID="w1", CELL_DATABASE_URL=server.get_uri(), EDGE_URL=edge.url,
                            EVENT_SECRET=SECRET, PRO_BILLING_AUTHORITY="edge", TICK_SECONDS=0.2,
                            FORWARD_IDLE_SECONDS=0.1, STATUS_SECONDS=0.5)
    log = logging.getLogger("cellkit.test.pgrestart")
    cell = build(settings, log)
    store = cell.store
    assert isinstance(store, PostgresStore)
    stop = threading.Event()
    loops = threading.Thread(target=run, args=(cell, stop), daemon=True)
    try:
        for i, mb in enumerate((1024, 4096)):
            cell.ticker.start(f"s{i}", "org-pg", "pro", mb, 1)
        loops.start()
        wait_for(lambda: len(edge.state.received) >= 4, "ticks before the restart")
        pg_ctl(["-m", "fast", "stop"])  # every connection is ended
        time.sleep(2.0)
        delivered_while_down = len(edge.state.received)
        pg_ctl(["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"])
        wait_for(lambda: len(edge.state.received) > delivered_while_down + 2, "ticks after the restart", 30)
        cell.ticker.resize("s0", 8192, 2)
        time.sleep(0.5)
        for sbx in store.running_sandboxes():
            cell.ticker.stop(sbx.sandbox_id)
        wait_for(lambda: store.spool_depth() == 0, "the spool to drain")
        stop.set()
        loops.join(30)
        envelopes = {k: json.loads(json.dumps(v, default=str), parse_float=Decimal)
                     for k, v in edge.state.received.items()}
        events = store.scale_events(0, 2**62)
        assert {e.sandbox_id for e in events} == {"s0", "s1"}
        assert_ticks_tile(envelopes, events, "postgres restarted mid-run")
        assert not store.running_sandboxes()
        assert getattr(store, "reconnects", 0) >= 1  # the same process and store object throughout
        store.close()
    finally:
        stop.set()
        edge.stop()
        pg_ctl(["-m", "fast", "stop"])
