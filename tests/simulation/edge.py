"""The edge as the simulations run it: the in-memory store, the real ingest, rollup and sender, a fixed clock.

`Edge.rollup` is one scheduled run in one process; a `Steps` given to it interposes on that process's
store and Stripe calls. `Edge.settle` is the schedule running on once every fault has cleared, then
once more a day later (past Stripe's 24 h identifier window: a row re-sent then would bill twice).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from typing import Any

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.adapters.memory.tables import MemoryTables
from chalicelib.bootstrap import Container
from chalicelib.core.envelopes import parse_batch
from chalicelib.ports import BillingStore, StoreUnavailable
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.rollup import RunResult, run_rollup
from chalicelib.services.rollup_fanout import drain
from chalicelib.services.send_fanout import on_send_messages
from chalicelib.settings import Settings, load_settings
from chalicelib.stripe_ports import MeterEventGateway
from tests.simulation.engine import SimStripe, Steps, fail

BUCKET = 3600
GRACE = 600
LEASE = 360


def copy_tables(tables: MemoryTables) -> MemoryTables:
    """Another store's worth of items, equal to these and sharing none (a lock of its own)."""
    return MemoryTables(**{f.name: copy.deepcopy(getattr(tables, f.name)) for f in fields(tables) if f.name != "lock"})


def edge_settings(shadow: bool, bill_from: int = 0) -> Settings:
    # One send worker: the order of Stripe calls, and so every step number, is the same on each replay.
    return load_settings({"SHADOW": "true" if shadow else "false", "BILL_FROM": str(bill_from),
                          "BUCKET_SECONDS": str(BUCKET), "GRACE_SECONDS": str(GRACE),
                          "ROLLUP_LOOKBACK_BUCKETS": "12", "LEASE_SECONDS": str(LEASE), "SEND_CONCURRENCY": "1",
                          "SEND_WORKER_THREADS": "1",
                          "EVENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x"})


@dataclass
class Edge:
    clock: FixedClock
    # Few sample shards: the rollup's workers make a handful of calls per shard, and every call is a step the
    # race simulations enumerate (the deployment's 32 change nothing in kind, only in count).
    store: MemoryStore = field(default_factory=lambda: MemoryStore(sample_shards=2))
    shadow: bool = True
    bill_from: int = 0
    queue: MemoryQueue | None = None  # the rollup's SQS queue; None: each run drains its own tasks
    send_queue: MemoryQueue | None = None  # the send's FIFO queue; None: each run sends in process
    stripe: SimStripe = field(init=False)

    def __post_init__(self) -> None:
        self.stripe = SimStripe(self.clock.now)

    def settings(self) -> Settings:
        return edge_settings(self.shadow, self.bill_from)

    def fork(self) -> Edge:
        """An independent edge in this one's state: its items, Stripe's events and the clock, copied. A scenario
        starts from a fork of a world built once, not from a world rebuilt (the same state, minus the building)."""
        if self.queue is not None:
            raise ValueError("fork an edge before its queue is made: a queue's clock is its edge's")
        clock = FixedClock(self.clock.now())
        store = MemoryStore(copy_tables(self.store.tables), self.store.retention_seconds,
                            sample_shards=self.store.sample_shards)
        edge = Edge(clock, store, self.shadow, self.bill_from)
        edge.stripe = SimStripe(clock.now, **{f.name: copy.deepcopy(getattr(self.stripe, f.name))
                                              for f in fields(self.stripe) if f.name != "clock"})
        return edge

    def ingest(self, envelopes: list[dict[str, Any]]) -> bool:
        return self.ingest_body(json.dumps(envelopes).encode())

    def ingest_body(self, body: bytes, cell_id: str = "cell-sim") -> bool:
        """POST /ingest as the route does it (the body parsed from JSON, floats as Decimal); False = 503."""
        try:
            wire = parse_batch(body)
            ingest_batch(wire, cell_id, self.store, self.settings(), self.clock.now())
        except StoreUnavailable:
            return False
        return True

    def rollup(self, steps: Steps | None = None) -> RunResult | None:
        """One run in its own process (its own store handle); None if it was killed or the store failed it."""
        store: BillingStore = self.store.handle()
        gateway = self.stripe
        if steps is not None:
            store, gateway = steps.wrap(store), steps.wrap(gateway)
        try:
            return run_rollup(Container(self.settings(), store, MemoryArchive(), self.clock,
                                        meter_gateway=gateway, task_queue=self.queue,
                                        send_task_queue=self.send_queue), "sim")
        except (Crash, StoreUnavailable):
            return None

    def workers(self) -> None:
        """The event source mapping with every fault cleared: workers until the queue is empty."""
        if self.queue is not None:
            self.clock.advance(self.queue.visibility)  # what a killed worker left hidden shows again
            drain(self.store.handle(), self.settings(), self.queue, "sim-worker", self.clock.now)
        if self.send_queue is not None:
            self.clock.advance(self.send_queue.visibility)
            while batch := self.send_queue.receive(10):
                done = self.send_worker(batch)
                self.send_queue.delete([r for r, _ in batch if r not in done])

    def send_worker(self, batch: list[tuple[str, str]], steps: Steps | None = None) -> set[str]:
        """One send worker invocation on a batch: the receipts to retry (all of them if it was killed)."""
        store: BillingStore = self.store.handle()
        gateway: MeterEventGateway = self.stripe
        if steps is not None:
            store, gateway = steps.wrap(store), steps.wrap(gateway)
        try:
            done = on_send_messages(store, gateway, self.settings(), self.clock, batch, "sim-send",
                                    sleep=lambda _: None, jitter=lambda: 0.5)
        except Crash:
            return {r for r, _ in batch}
        return {str(m) for m in done.failed}

    def settle(self, rounds: int = 12) -> None:
        self.shadow = False
        for _ in range(rounds):
            self.clock.advance(900)
            self.rollup()
            self.workers()
        self.clock.advance(86400 + 3600)
        self.rollup()
        if self.send_queue is not None:
            self.workers()  # a send worker a day later too: a row re-sent then would bill twice

    def stuck_rows(self) -> dict[str, int]:
        return {q: len(rows) for q in ("pending", "shadow", "failed")
                if (rows := self.store.outbox_queue(q))}

    def stored_event_ids(self) -> set[str]:
        return {e for bucket in self.store.tables.samples.values() for e in bucket}


def check(edge: Edge, seed: int, owed: dict[tuple[str, str], int], billable_ids: set[str],
          free_customers: set[str]) -> None:
    """The invariants every edge scenario ends on, once its faults have cleared."""
    assert edge.stripe.twice_accepted() == [], fail(seed, "a meter-event identifier was accepted twice")
    billed = edge.stripe.micro_totals()
    assert not {c for c, _ in billed} & free_customers, fail(seed, f"a free org was billed: {billed}")
    want = {k: v for k, v in owed.items() if v}
    diff = {k: (want.get(k, 0), billed.get(k, 0)) for k in set(want) | set(billed) if want.get(k) != billed.get(k)}
    assert not diff, fail(seed, f"Stripe's totals differ from the ledger (micro-units, want/got): {diff}")
    assert edge.stuck_rows() == {}, fail(seed, f"outbox rows left behind: {edge.stuck_rows()}")
    assert all(s.swept for s in edge.store.late_slots(0)), fail(seed, "stragglers never billed (a late slot unswept)")
    assert list(edge.store.quarantine()) == [], fail(seed, "envelopes quarantined")
    lost = billable_ids - edge.stored_event_ids()
    assert not lost, fail(seed, f"{len(lost)} delivered pro ticks were not stored")
