"""The rollup: closed buckets' samples become outbox rows (meter events), exactly once.

Pure planning (`meter_values`, `plan_bucket`, `plan_late`) over plain data,
and `run_rollup`, the shell that holds the lease and walks the buckets:

1. ROLL   every closed bucket from the cursor on: settle its aggregates (one
          read of its samples), write one row per (org, meter), mark it rolled.
2. LATE   stragglers (samples written after their bucket could be read) are
          billed as delta rows, atomically with clearing their late flag. The
          late index is swept only when the late signal says it may hold
          something new (`late_sweep_due`), so a quiet run costs one read.
3. PROMOTE (live only) shadow rows of buckets at or after BILL_FROM -> pending.
4. SEND   (live only) pending rows to Stripe, see sender.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.late import GSI_LAG_SECONDS, after_sweep, late_sweep_due
from chalicelib.core.metering import buckets_to_roll, plan_bucket, plan_late
from chalicelib.core.samples import StoredSample
from chalicelib.observability import logger
from chalicelib.ports import BillingStore, Deps
from chalicelib.services.settlement import settle
from chalicelib.settings import Settings

LEASE = "rollup"
CURSOR = "rollup"
LATE_SAMPLES_PER_RUN = 10_000






















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


def roll_bucket(store: BillingStore, settings: Settings, b: int, run_id: str, now: int) -> dict[str, Any] | None:
    """Settle, write the bucket's rows, mark it rolled; None if another run rolled it first."""
    aggs = settle(store, settings, b, now) or []
    # Checked after the aggregates were read: once a bucket is rolled, stragglers are added to its stored
    # aggregates (late rows); emitting those again as first-emission rows would bill them twice.
    if _rolled(store.bucket_state(b)):
        return None
    orgs = store.get_orgs(a.org_id for a in aggs)
    plan = plan_bucket(b, aggs, orgs, settings, run_id, now)
    # Rows first, then the mark: a crash in between re-plans the same rows, and existing rows keep their state.
    created = store.create_outbox_rows(plan.rows)
    report = {
        "run_id": run_id,
        "orgs": len(aggs),
        "rows": len(plan.rows),
        "consumed": plan.consumed,
        "unknown": plan.unknown,
    }
    if not store.mark_bucket_rolled(b, report):
        return None
    if aggs:
        logger.info("bucket_rolled", extra={"run_id": run_id, "bucket_start": b, **report})
    return report | {"created": created}


def _rolled(state: dict[str, Any] | None) -> bool:
    return bool(state and state.get("state") == "rolled")


def roll_buckets(store: BillingStore, settings: Settings, run_id: str, now: int) -> dict[str, Any]:
    rolled: list[int] = []
    empty = rows_written = consumed = 0
    unknown: list[dict[str, Any]] = []
    for b in buckets_to_roll(store.cursor(CURSOR), now, settings):
        report = None if _rolled(store.bucket_state(b)) else roll_bucket(store, settings, b, run_id, now)
        if report and report["orgs"]:
            rolled.append(b)
            rows_written += report["created"]
            consumed += report["consumed"]
            unknown += [u | {"bucket_start": b} for u in report["unknown"]]
        elif report:
            empty += 1
        store.advance_cursor(CURSOR, b + settings.BUCKET_SECONDS)
    for u in unknown:
        logger.error("usage_not_billed", extra={"run_id": run_id, **u})
    return {
        "buckets": rolled,
        "emptyBuckets": empty,
        "rows": rows_written,
        "consumed": consumed,
        "unbilled": unknown,
    }


def roll_late(store: BillingStore, settings: Settings, run_id: str, now: int) -> dict[str, Any]:
    signal = store.late_signal()
    if not late_sweep_due(signal, now, settings.LATE_SWEEP_SECONDS):
        return {"swept": False, "samples": 0, "waiting": 0, "chunks": 0, "rows": 0, "unbilled": []}
    late = store.late_samples(LATE_SAMPLES_PER_RUN)
    rolled_buckets: dict[int, bool] = {}
    ready: list[StoredSample] = []
    for s in late:
        if s.bucket_start not in rolled_buckets:
            state = store.bucket_state(s.bucket_start)
            rolled_buckets[s.bucket_start] = bool(state and state.get("state") == "rolled")
        # Stragglers of a bucket not rolled yet wait: its first emission must come first.
        if rolled_buckets[s.bucket_start]:
            ready.append(s)
    orgs = store.get_orgs({s.org_id for s in ready})
    chunks, unknown = plan_late(ready, orgs, settings, run_id, now)
    committed = rows = 0
    for chunk in chunks:
        if store.commit_late_chunk(chunk, now):
            committed += 1
            rows += len(chunk.rows)
            logger.info(
                "late_samples_billed",
                extra={
                    "run_id": run_id,
                    "org_id": chunk.org_id,
                    "bucket_start": chunk.bucket_start,
                    "samples": len(chunk.event_ids),
                    "rows": len(chunk.rows),
                },
            )
    for u in unknown:
        logger.error("usage_not_billed", extra={"run_id": run_id, **u})
    if len(ready) == len(late) < LATE_SAMPLES_PER_RUN and committed == len(chunks):
        store.save_late_sweep(after_sweep(signal, now, settings.LATE_MARGIN_SECONDS + GSI_LAG_SECONDS))
    return {
        "swept": True,
        "samples": len(ready),
        "waiting": len(late) - len(ready),
        "chunks": committed,
        "rows": rows,
        "unbilled": unknown,
    }


def promote_shadow(store: BillingStore, settings: Settings, now: int) -> int:
    """Arming live with BILL_FROM in the past: rows rolled in shadow at/after it get billed, not skipped."""
    promoted = 0
    while True:
        batch = store.outbox_queue("shadow", min_bucket=settings.BILL_FROM, limit=500)
        moved = sum(store.transition(r.id, "shadow", "pending", now) for r in batch)
        promoted += moved
        if len(batch) < 500 or moved == 0:
            return promoted


def run_rollup(svc: Deps, trigger: str) -> RunResult:
    """One rollup run under a lease; a second concurrent run returns at once with `skipped`."""
    from chalicelib.services.sender import send_pending

    settings: Settings = svc.settings
    store: BillingStore = svc.store
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
        result.roll = roll_buckets(store, settings, run_id, now)
        result.roll["late"] = roll_late(store, settings, run_id, now)
        if not settings.SHADOW:
            result.roll["promoted"] = promote_shadow(store, settings, now)
            result.send = send_pending(store, svc.stripe_gateway(), settings, svc.clock, run_id).body()
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
