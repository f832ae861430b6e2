"""Cells built with the cell kit, in-process: an injected clock, the edge's ingest as their network, one Stripe.

A `CrashableCell` is the kit's own wiring (`cellkit.bootstrap.build`) on its SQLite store (a file in
a temporary directory) or its in-memory one, stepped by the scenario instead of the kit's threads.
`kill` ends its process wherever it is (a `Crash` at a store call, armed by a `Steps`) and `restart`
reopens the same SQLite file in a fresh process, as a control plane restarted after SIGKILL would.
`EdgeLink` is the forwarder's network: POST /ingest reaches the edge's real ingest, with seeded 503s,
429s, timeouts, and answers lost after the edge stored the batch.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.halts import halts_for
from cellkit.adapters.memory import MemoryStore as CellMemoryStore
from cellkit.adapters.sqlite import SqliteStore
from cellkit.bootstrap import Cell, build
from cellkit.core.usage import OrgRow
from cellkit.ports import CellStore, HttpResponse, TransportError
from cellkit.services.billers import billed_through
from cellkit.settings import CellSettings
from chalicelib.core.orgs import Plan
from tests.simulation.edge import BUCKET, Edge
from tests.simulation.engine import US, FaultLog, OrgPlan, SimStripe, Steps

LOG = logging.getLogger("sim.cells")


@dataclass
class EdgeLink:
    """The cell's HTTP transport, in-process: POST /ingest to the edge's ingest, anything else 200."""

    edge: Edge
    rng: random.Random
    log: FaultLog
    faulty: bool = True

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        if not url.endswith("/ingest"):
            return HttpResponse(200, b"{}", {})
        roll = self.rng.random() if self.faulty else 1.0
        if roll < 0.04:
            self.log.note("forward_timeout")
            raise TransportError("injected: timed out")
        if roll < 0.08:
            self.log.note("forward_429")
            return HttpResponse(429, b'{"error": "slow down"}', {"Retry-After": "1"})
        if not self.edge.ingest_body(body or b"[]", headers.get("X-Cell-Id", "")):
            return HttpResponse(503, b'{"error": "store unavailable"}', {})
        if roll < 0.12:
            self.log.note("forward_answer_lost")  # stored, but the 202 never reaches the cell
            raise TransportError("injected: connection reset after the edge answered")
        return HttpResponse(202, json.dumps({"accepted": True}).encode(), {})


@dataclass
class Segment:
    sandbox_id: str
    org: OrgPlan
    memory_mb: int
    start_us: int
    end_us: int


@dataclass
class CrashableCell:
    cell_id: str
    orgs: list[tuple[OrgPlan, Plan]]
    clock: ManualClock
    link: EdgeLink
    stripe: SimStripe
    db: Path | None = None  # SQLite file; None: the kit's in-memory store
    authority: str = "cell"
    segments: list[Segment] = field(default_factory=list)
    open_: dict[str, Segment] = field(default_factory=dict)  # sandbox -> its running segment
    restarts: int = 0

    def __post_init__(self) -> None:
        # The kills simulated are process kills, which synchronous=NORMAL survives: no fsync per commit here.
        self.store: CellStore = SqliteStore(str(self.db), durable=False) if self.db else CellMemoryStore()
        for org, plan in self.orgs:
            self.store.put_org(OrgRow(org.org_id, plan, org.billing_mode, org.customer))
        self.cell = self._build(self.store)

    def settings(self) -> CellSettings:
        return CellSettings(CELL_ID=self.cell_id, WORKER_ID=f"{self.cell_id}-w1", EDGE_URL="http://edge.sim",
                            EVENT_SECRET="x", PRO_BILLING_AUTHORITY=self.authority)

    def _build(self, store: CellStore) -> Cell:
        # The halt table sits beside the cell's own (the one database): the process's steps are the store's.
        cell = build(self.settings(), LOG, store=store, clock=self.clock, transport=self.link,
                     stripe=self.stripe, sleep=lambda _: None, halt_store=halts_for(self.store))
        cell.billers.start()
        return cell

    @property
    def now_us(self) -> int:
        return self.clock.now_us()

    # --- the control plane ----------------------------------------------------------------------------
    def start(self, sandbox_id: str, org: OrgPlan, memory_mb: int) -> None:
        plan = dict((o.org_id, p) for o, p in self.orgs)[org.org_id]
        self.cell.ticker.start(sandbox_id, org.org_id, plan, memory_mb, 1, self.now_us)
        self.open_[sandbox_id] = Segment(sandbox_id, org, memory_mb, self.now_us, 0)

    def resize(self, sandbox_id: str, memory_mb: int) -> None:
        self.cell.ticker.resize(sandbox_id, memory_mb, 1, self.now_us)
        self._close(sandbox_id)
        old = self.segments[-1]
        self.open_[sandbox_id] = Segment(sandbox_id, old.org, memory_mb, self.now_us, 0)

    def stop(self, sandbox_id: str) -> None:
        self.cell.ticker.stop(sandbox_id, self.now_us)
        self._close(sandbox_id)

    def _close(self, sandbox_id: str) -> None:
        seg = self.open_.pop(sandbox_id)
        seg.end_us = self.now_us
        self.segments.append(seg)

    # --- one step of its loops --------------------------------------------------------------------------
    def step(self, at_us: int, steps: Steps | None = None, phase: str = "") -> None:
        """Tick, forward, bill (the billers decide whether they run); with `steps`, the `phase` runs on a
        store that may kill the process."""
        self.clock.set(at_us)
        doomed = self._build(steps.wrap(self.store)) if steps is not None else self.cell
        (doomed if phase == "tick" else self.cell).ticker.tick()
        self.forward(doomed if phase == "forward" else self.cell)
        (doomed if phase == "bill" else self.cell).billers.run_once()

    def forward(self, cell: Cell | None = None, posts: int = 10) -> None:
        fwd = (cell or self.cell).forwarder
        assert fwd is not None
        for _ in range(posts):
            if not self.store.spool_depth() or not fwd.pump():
                return

    def restart(self) -> None:
        """After a kill: a fresh process on the same database (what it committed is all it has)."""
        self.restarts += 1
        if self.db is not None:
            self.store.close()
            self.store = SqliteStore(str(self.db), durable=False)
        self.cell = self._build(self.store)

    def switch_to_edge(self, t: int) -> None:
        """The cutover's drain-check, then PRO_BILLING_AUTHORITY=edge and a restart."""
        for _ in range(20):
            self.cell.billers.run_once()
            drained = billed_through(self.store, self.now_us // US, BUCKET) >= t
            if drained and self.store.count_billable("pending") == 0:
                break
        else:
            raise AssertionError(f"{self.cell_id} never drained through {t}")
        self.authority = "edge"
        self.cell = self._build(self.store)

    def status(self) -> dict[str, Any]:
        return {"pending": self.store.count_billable("pending"), "failed": self.store.count_billable("failed"),
                "spool": self.store.spool_depth(), "aside": len(self.store.aside())}
