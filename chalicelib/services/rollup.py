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
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.core.buckets import bucket_of
from chalicelib.core.money import exact
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, State, delta_identifier, first_identifier
from chalicelib.core.pricing import OVERAGE_METER, TIERS, gb_seconds
from chalicelib.observability import logger
from chalicelib.ports import BillingStore, LateChunk, LateSignal, OrgAggregate, StoredSample
from chalicelib.services.settlement import settle
from chalicelib.settings import Settings

LEASE = "rollup"
CURSOR = "rollup"
MAX_BUCKETS_PER_RUN = 240
# Room in one TransactWriteItems (100 actions) for the samples, up to 6 tier rows and the aggregate.
LATE_CHUNK = 90
LATE_SAMPLES_PER_RUN = 10_000
# Allowance for the late index to show a write: a GSI is eventually consistent (in practice
# it lags well under a second).
GSI_LAG_SECONDS = 60


@dataclass(frozen=True)
class MeterValues:
    values: dict[str, Decimal]
    unknown: dict[int, Decimal]  # memory_mb -> seconds no meter can carry: usage not billed


def meter_values(seconds_by_memory: dict[int, Decimal], billing_mode: str) -> MeterValues:
    """Legacy: seconds per tier meter; unified: GB-seconds of every size on the (flat) overage meter.

    Unbilled, and reported: legacy sizes without a tier (there is no meter for them) and, in both
    modes, size 0 (ticks of older workers without `memory_mb`: GB-seconds cannot be known).
    """
    values: dict[str, Decimal] = defaultdict(Decimal)
    unknown: dict[int, Decimal] = {}
    for mb, seconds in sorted(seconds_by_memory.items()):
        tier = TIERS.get(mb)
        if mb > 0 and billing_mode == "unified":
            # mb x s / 1024 is exact in Decimal (1024 is a power of two): round the sum once, not each size.
            values[OVERAGE_METER] += Decimal(mb) * seconds / 1024
        elif tier is not None:
            values[tier.meter] += seconds
        else:
            unknown[mb] = seconds
    return MeterValues({m: exact(v) for m, v in values.items() if v > 0}, unknown)


def unbilled(org_id: str, mv: MeterValues, **where: Any) -> list[dict[str, Any]]:
    """What an operator needs to credit or bill by hand: who, which size, how much."""
    return [
        {"org_id": org_id, "memory_mb": mb, "seconds": str(s), "gb_seconds": str(gb_seconds(mb, s)), **where}
        for mb, s in mv.unknown.items()
    ]


def row_state(bucket_start: int, settings: Settings) -> State | None:
    """Shadow rows for every bucket while in shadow; live: pending at/after BILL_FROM, none before (consumed)."""
    if settings.SHADOW:
        return "shadow"
    return "pending" if bucket_start >= settings.BILL_FROM else None


@dataclass
class BucketPlan:
    rows: list[OutboxRow]
    unknown: list[dict[str, Any]]
    consumed: bool


def plan_bucket(
    bucket_start: int,
    aggregates: Iterable[OrgAggregate],
    orgs: dict[str, Org],
    settings: Settings,
    run_id: str,
    now: int,
) -> BucketPlan:
    state = row_state(bucket_start, settings)
    rows: list[OutboxRow] = []
    unknown: list[dict[str, Any]] = []
    for agg in aggregates:
        mode = orgs[agg.org_id].billing_mode if agg.org_id in orgs else "legacy"
        mv = meter_values(agg.seconds_by_memory, mode)
        unknown += unbilled(agg.org_id, mv)
        if state is None:
            continue
        rows += [
            OutboxRow(
                id=first_identifier(agg.org_id, bucket_start, meter),
                org_id=agg.org_id,
                bucket_start=bucket_start,
                bucket_end=bucket_start + settings.BUCKET_SECONDS,
                meter=meter,
                value=value,
                kind="first",
                state=state,
                samples=agg.samples,
                run_id=run_id,
                created_at=now,
            )
            for meter, value in sorted(mv.values.items())
        ]
    return BucketPlan(rows=rows, unknown=unknown, consumed=state is None)


def plan_late(
    samples: Iterable[StoredSample], orgs: dict[str, Org], settings: Settings, run_id: str, now: int
) -> tuple[list[LateChunk], list[dict[str, Any]]]:
    """Group stragglers by (org, bucket) into chunks small enough for one transaction each."""
    groups: dict[tuple[str, int], list[StoredSample]] = defaultdict(list)
    for s in samples:
        groups[(s.org_id, s.bucket_start)].append(s)
    chunks: list[LateChunk] = []
    unknown: list[dict[str, Any]] = []
    for (org_id, bucket), group in sorted(groups.items()):
        group.sort(key=lambda s: s.event_id)
        for i in range(0, len(group), LATE_CHUNK):
            part = group[i : i + LATE_CHUNK]
            by_mb: dict[int, Decimal] = defaultdict(Decimal)
            for s in part:
                by_mb[s.memory_mb] += s.seconds
            mode = orgs[org_id].billing_mode if org_id in orgs else "legacy"
            mv = meter_values(dict(by_mb), mode)
            unknown += unbilled(org_id, mv, bucket_start=bucket, late=True)
            state = row_state(bucket, settings)
            ids = [s.event_id for s in part]
            rows = (
                [
                    OutboxRow(
                        id=delta_identifier(org_id, bucket, meter, ids),
                        org_id=org_id,
                        bucket_start=bucket,
                        bucket_end=bucket + settings.BUCKET_SECONDS,
                        meter=meter,
                        value=value,
                        kind="delta",
                        state=state,
                        samples=len(part),
                        run_id=run_id,
                        created_at=now,
                    )
                    for meter, value in sorted(mv.values.items())
                ]
                if state
                else []
            )
            chunks.append(LateChunk(org_id, bucket, rows, {mb: exact(v) for mb, v in by_mb.items()}, ids))
    return chunks, unknown


def late_sweep_due(signal: LateSignal, now: int, interval: int) -> bool:
    """Sweep unless the current version was already swept completely, and not too long ago.

    The periodic sweep is a backstop only: every late write bumps the version first.
    """
    return signal.swept_version != signal.version or now - signal.swept_at >= interval


def after_sweep(signal: LateSignal, now: int, settle: int) -> LateSignal:
    """The signal after a complete sweep at `now` (nothing waiting, nothing left over).

    A version counts as swept only by a sweep starting `settle` seconds after the
    rollup first saw it: by then every write that bumped it has finished (a write
    outlives no API Lambda timeout) and its index entries are visible.
    """
    seen_at = signal.seen_at if signal.seen_version == signal.version else now
    if now - seen_at >= settle:
        return LateSignal(signal.version, signal.version, seen_at, signal.version, now)
    return LateSignal(signal.version, signal.version, seen_at, signal.swept_version, signal.swept_at)


def buckets_to_roll(cursor: int | None, now: int, settings: Settings) -> list[int]:
    """Closed buckets from the cursor on (first run: a bounded look-back), oldest first."""
    width = settings.BUCKET_SECONDS
    last_closed = bucket_of(now - settings.GRACE_SECONDS, width) - width
    first = cursor if cursor is not None else last_closed - (settings.ROLLUP_LOOKBACK_BUCKETS - 1) * width
    return list(range(first, last_closed + 1, width))[:MAX_BUCKETS_PER_RUN]


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


def roll_buckets(store: BillingStore, settings: Settings, run_id: str, now: int) -> dict[str, Any]:
    rolled: list[int] = []
    empty = rows_written = consumed = 0
    unknown: list[dict[str, Any]] = []
    for b in buckets_to_roll(store.cursor(CURSOR), now, settings):
        state = store.bucket_state(b)
        report = None if state and state.get("state") == "rolled" else roll_bucket(store, settings, b, run_id, now)
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


def run_rollup(svc: Any, trigger: str, gateway: Any = None) -> RunResult:
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
            result.send = send_pending(store, gateway or svc.stripe_gateway(), settings, svc.clock, run_id).body()
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
