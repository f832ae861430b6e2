"""The free tier across the wire: the kit's ticker and forwarder feed the real edge app (chalice.test.Client),
the edge's one-minute round spends and halts, and the cell's reconciler pulls GET /internal/halted-orgs.

- Every halt push is dropped: the reconciler halts the org within a minute of the edge's halt anyway,
  and nothing of the org ticks after the cell stopped it.
- A cell that cannot reach the edge while the org is halted catches up on its first pull back.
- A top-up resumes the org on the edge; the next pull wakes exactly what the halt stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.halts import halts_for
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.memory import MemoryStore
from cellkit.ports import HttpResponse, TransportError
from cellkit.services.forwarder import Forwarder
from cellkit.services.halts import HaltListUnavailable, Halts, pull_halted
from cellkit.services.ticker import Ticker
from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore as EdgeMemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.credit_ports import CellPusher
from chalicelib.services.credits import grant_credits
from chalicelib.services.halt_push import credit_round
from chalicelib.settings import Settings, load_settings
from tests.cellkit.test_real_edge import ChaliceTransport
from tests.conftest import SECRET, T0

US = 1_000_000
LOG = logging.getLogger("cellkit.test.free_edge")


class Dropped(CellPusher):
    """Every push is lost on the way (the cell never hears it)."""

    def __init__(self) -> None:
        self.pushes = 0

    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        self.pushes += 1
        return False


class Flaky(ChaliceTransport):
    down = False

    def request(self, method: str, url: str, body: bytes | None, headers: Any, timeout: float) -> HttpResponse:
        if self.down:
            raise TransportError("cell cut off from the edge")
        return super().request(method, url, body, headers, timeout)


@pytest.fixture
def edge(env: dict[str, str]) -> Container:
    settings: Settings = load_settings(env | {"FREE_TIER_SEED_CENTS": "1"})
    svc = Container(settings=settings, store=EdgeMemoryStore(retention_seconds=settings.sample_retention_seconds),
                   archive=MemoryArchive(), clock=FixedClock(T0), credit_store=MemoryCredits(),
                   cell_store=MemoryCells(), cell_pusher=Dropped())
    svc.store.put_org(Org("org-f", plan="free"))
    return svc


@pytest.fixture
def client(edge: Container, serve: Callable[[Container], Any]) -> Any:
    return serve(edge)


@dataclass
class World:
    svc: Container
    clock: ManualClock
    store: MemoryStore
    ticker: Ticker
    halts: Halts
    edge: EdgeClient
    transport: Flaky
    forwarder: Forwarder
    halted_on_edge: int | None = None
    halted_in_cell: int | None = None

    def minute(self) -> None:
        """The cell's pull (unless cut off), three 20 s ticks forwarded, then the edge's round: the cell
        hears of a halt at its next pull, a minute after the round that decided it at the latest."""
        try:
            if self.halts.reconcile(pull_halted(self.edge))["halted"]:
                self.halted_in_cell = self.clock.now_us() // US
        except HaltListUnavailable:
            pass
        for _ in range(3):
            self.clock.advance_us(20 * US)
            self.svc.clock.set(self.clock.now_us() // US)  # type: ignore[attr-defined]
            self.ticker.tick()
            if not self.transport.down:
                self.forwarder.pump()
        body = credit_round(self.svc.store, self.svc.credits(), self.svc.cells(), self.svc.pusher(),
                            self.svc.settings, self.svc.now())
        if body["pass"]["halted"]:
            self.halted_on_edge = self.svc.now()


def world(client: Any, svc: Container) -> World:
    clock, store = ManualClock(T0 * US), MemoryStore()
    halt_store = halts_for(store)
    ticker = Ticker(store, "cell-r", "w1", clock, LOG, halted=halt_store.org_halted_locked)
    transport = Flaky(client)
    edge = EdgeClient("http://edge", SECRET, "cell-r", transport, clock)
    status = {"authority": "edge", "billers_running": False, "billed_through": 0, "pending_billable": 0,
              "spool_depth": 0, "base_url": "http://cell-r.admin"}
    assert edge.put_json("/internal/cells/cell-r", status).status == 200
    ticker.start("s1", "org-f", "free", 16384, 4)  # 0.128 cents a tick: 1 cent lasts eight ticks
    ticker.start("s2", "org-f", "free", 1024, 1)
    forwarder = Forwarder(store, edge, clock, lambda _: None, LOG)
    return World(svc, clock, store, ticker, Halts(halt_store, ticker, clock, LOG), edge, transport, forwarder)


def ticks_after(w: World, ts_s: int) -> list[str]:
    out = []
    for item in w.store.spool_head(10_000):
        env = json.loads(item.body)
        if env["timestamp"] > _iso(ts_s):
            out.append(env["id"])
    return out


def _iso(ts_s: int) -> str:
    from cellkit.core.timeutil import rfc3339

    return rfc3339(ts_s * US)


def test_every_push_dropped_the_reconciler_halts_within_a_minute(client: Any, edge: Container) -> None:
    w = world(client, edge)
    for _ in range(10):
        w.minute()
    assert w.halted_on_edge is not None and isinstance(edge.pusher(), Dropped) and edge.pusher().pushes > 0
    assert w.halted_in_cell is not None and w.halted_in_cell - w.halted_on_edge <= 60
    assert {w.store.sandbox(s).status for s in ("s1", "s2")} == {"halted"}  # type: ignore[union-attr]
    w.forwarder.drain(max_posts=100)
    assert w.store.spool_depth() == 0
    sent_after = [e for e in _ledger(edge) if e > w.halted_in_cell]
    assert sent_after == [], "a tick of the halted org after the cell stopped it"


def _ledger(svc: Container) -> list[int]:
    """Every free tick the edge stored, by its end (unix seconds, floored)."""
    from chalicelib.adapters.memory.credits import MemoryCredits as Credits

    credits = svc.credits()
    assert isinstance(credits, Credits)
    ids = [e for slot in credits.tables.ledger.values() for e in slot]
    return sorted(int(e.rsplit(":", 1)[1]) // US for e in ids)


def test_a_cell_down_during_the_halt_catches_up_and_a_top_up_wakes_exactly_what_it_stopped(
    client: Any, edge: Container
) -> None:
    w = world(client, edge)
    w.ticker.stop("s2")  # its user stops it: a resume must not wake it
    w.transport.down = True
    for _ in range(8):
        w.minute()
    assert w.halted_on_edge is None, "the cell's ticks have not reached the edge"
    w.transport.down = False
    for _ in range(3):
        w.minute()
    assert w.halted_on_edge is not None and w.halted_in_cell is not None
    assert w.halted_in_cell - w.halted_on_edge <= 60
    assert w.store.sandbox("s1").status == "halted"  # type: ignore[union-attr]
    grant_credits(edge.credits(), edge.settings, "org-f", Decimal(50), "support-1", edge.now())
    w.minute()
    w.minute()
    assert [s.sandbox_id for s in w.store.running_sandboxes()] == ["s1"]
    assert w.store.sandbox("s2").status == "stopped"  # type: ignore[union-attr]
