"""The rollup: closed buckets' samples become outbox rows (meter events), exactly once.

Pure planning (`meter_values`, `plan_bucket`, `plan_late_slot`) over plain data,
and `run_rollup`, the shell that holds the lease and walks the buckets:

1. ROLL   every closed bucket from the cursor on: settled from its shards'
          partials (services/rollup_fanout.py), one row per (org, meter), marked rolled.
2. LATE   every closed late slot from the late cursor on: its stragglers (samples
          written after their bucket could be read) billed as delta rows, fanned out
          the same way (services/late_fanout.py); a quiet run reads one partition.
3. PROMOTE (live only) shadow rows of buckets at or after BILL_FROM -> pending.
4. SEND   (live only) pending rows to Stripe, see sender.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.core.fanout import Walk
from chalicelib.core.metering import buckets_to_roll
from chalicelib.observability import logger
from chalicelib.ports import (
    AggregateStore,
    Clock,
    GroupedQueue,
    LateStore,
    OrgStore,
    OutboxStore,
    RunControl,
    SampleStore,
    TaskQueue,
)
from chalicelib.services.late_fanout import walk_late
from chalicelib.services.rollup_fanout import InProcessTasks, enqueue_bucket, on_messages, reduce_bucket
from chalicelib.settings import Settings
from chalicelib.stripe_ports import MeterEventGateway

LEASE = "rollup"
CURSOR = "rollup"


class RollupStore(OrgStore, SampleStore, AggregateStore, RunControl, OutboxStore, LateStore, Protocol):
    """The billing store's roles the rollup uses: every one but the quarantine (ingest's)."""


class RollupDeps(Protocol):
    """What a rollup run asks of the container: its store, Stripe's metering, the clock, the task queue."""

    settings: Settings
    clock: Clock

    @property
    def store(self) -> RollupStore: ...

    def now(self) -> int: ...

    def stripe_gateway(self) -> MeterEventGateway: ...

    def rollup_queue(self) -> TaskQueue | None: ...

    def send_queue(self) -> GroupedQueue | None:
        """The send's FIFO queue, or None: the run sends in process."""
        ...


@dataclass
class RunResult:
    run_id: str
    settings: Settings
    now: int
    skipped: str | None = None
    roll: dict[str, Any] = field(default_factory=dict)
    send: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "ok": self.skipped is None,
            "runId": self.run_id,
            "shadow": s.SHADOW,
            "cfg": {
                "billFrom": s.BILL_FROM,
                "bucketSec": s.BUCKET_SECONDS,
                "grace": s.GRACE_SECONDS,
                "nowSec": self.now,
            },
            "roll": self.roll,
            "send": self.send,
        }
        if self.skipped:
            body["skipped"] = self.skipped
        return body


def roll_buckets(store: RollupStore, settings: Settings, run_id: str, now: int,
                 queue: TaskQueue | None = None) -> dict[str, Any]:
    """The coordinator: every closed bucket from the cursor is rolled, or its shards' tasks enqueued.

    With no queue (no ROLLUP_QUEUE_URL) the run is its own worker pool: it enqueues on a queue of its
    own, drains it in process, and walks again; the same tasks, the same reducer.
    """
    if queue is not None:
        walk = _walk(store, settings, run_id, now, queue, claim=True)
        return walk.body() | {"late": walk_late(store, settings, run_id, now, queue, claim=True).body()}
    own = InProcessTasks()
    first = _walk(store, settings, run_id, now, own, claim=False)
    first.reports |= on_messages(store, settings, list(enumerate(own.bodies)), run_id, lambda: now).rolled
    body = first.merge(_walk(store, settings, run_id, now, own, claim=False)).body()
    # The late slots after the buckets: a slot waits for the buckets it touches to be rolled.
    own.bodies.clear()
    first_late = walk_late(store, settings, run_id, now, own, claim=False)
    if not own.bodies:
        return body | {"late": first_late.body()}  # a quiet run: one read of the slots since the cursor
    first_late.reports |= on_messages(store, settings, list(enumerate(own.bodies)), run_id, lambda: now).swept
    return body | {"late": first_late.merge(walk_late(store, settings, run_id, now, own, claim=False)).body()}


class _Walk(Walk):
    def body(self) -> dict[str, Any]:
        rolled = sorted(b for b, r in self.reports.items() if r["orgs"])
        unknown = [u | {"bucket_start": b} for b, r in sorted(self.reports.items()) for u in r["unknown"]]
        return {
            "buckets": rolled,
            "emptyBuckets": sum(1 for r in self.reports.values() if not r["orgs"]),
            "rows": sum(r["created"] for r in self.reports.values()),
            "consumed": sum(r["consumed"] for r in self.reports.values() if r["orgs"]),
            "unbilled": unknown,
            "waiting": self.waiting,
            "tasks": self.enqueued,
        }


def _walk(store: RollupStore, settings: Settings, run_id: str, now: int, queue: TaskQueue, claim: bool) -> _Walk:
    walk = _Walk()
    for b in buckets_to_roll(store.cursor(CURSOR), now, settings):
        state = store.bucket_state(b)
        if state is None or not state.rolled:
            report = reduce_bucket(store, settings, b, run_id, now, state)
            if report is not None:
                walk.reports[b] = report
                for u in report["unknown"]:
                    logger.error("usage_not_billed", extra={"run_id": run_id, "bucket_start": b, **u})
            elif not _rolled_now(store, b):
                walk.enqueued += enqueue_bucket(store, queue, settings, b, now, claim)
                walk.waiting.append(b)
        # The cursor passes a bucket only once it and every bucket before it are rolled.
        if not walk.waiting:
            store.advance_cursor(CURSOR, b + settings.BUCKET_SECONDS)
    return walk


def _rolled_now(store: RollupStore, b: int) -> bool:
    # None from the reducer also when another reducer marked the bucket a moment ago.
    state = store.bucket_state(b)
    return state is not None and state.rolled


def promote_shadow(store: RollupStore, settings: Settings, now: int) -> int:
    """Arming live with BILL_FROM in the past: rows rolled in shadow at/after it get billed, not skipped."""
    promoted = 0
    while True:
        batch = store.outbox_queue("shadow", min_bucket=settings.BILL_FROM, limit=500)
        moved = sum(store.transition(r.id, "shadow", "pending", now) for r in batch)
        promoted += moved
        if len(batch) < 500 or moved == 0:
            return promoted


def run_rollup(svc: RollupDeps, trigger: str) -> RunResult:
    """One rollup run under a lease; a second concurrent run returns at once with `skipped`."""
    from chalicelib.services.send_fanout import enqueue_sends
    from chalicelib.services.sender import send_pending

    settings: Settings = svc.settings
    store = svc.store
    now = svc.now()
    run_id = f"{trigger}-{now}-{uuid.uuid4().hex[:8]}"
    result = RunResult(run_id=run_id, settings=settings, now=now)
    if not settings.HOME_REGION:
        result.skipped = "HOME_REGION=false: the rollup runs only in the home region"
        return result
    if not store.acquire_lease(LEASE, run_id, now, settings.LEASE_SECONDS):
        result.skipped = "another rollup run holds the lease"
        logger.warning("rollup_skipped_lease_held", extra={"run_id": run_id})
        return result
    try:
        result.roll = roll_buckets(store, settings, run_id, now, svc.rollup_queue())
        if not settings.SHADOW:
            result.roll["promoted"] = promote_shadow(store, settings, now)
            send_queue = svc.send_queue()
            result.send = (enqueue_sends(store, send_queue, settings, svc.now(), run_id) if send_queue is not None
                           else send_pending(store, svc.stripe_gateway(), settings, svc.clock, run_id).body())
    finally:
        store.release_lease(LEASE, run_id)
    logger.info(
        "rollup_done",
        extra={
            "run_id": run_id,
            "trigger": trigger,
            "shadow": settings.SHADOW,
            "buckets": len(result.roll.get("buckets", [])),
        },
    )
    return result
