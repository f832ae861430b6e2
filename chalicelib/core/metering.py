"""Closed buckets' usage -> meter values -> outbox rows: the rollup's planning, pure.

The shell that reads and writes around it is services/rollup.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.billing_flags import BillingFlags
from chalicelib.core.buckets import bucket_of
from chalicelib.core.money import exact
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import Kind, OutboxRow, State, first_identifier, late_identifier
from chalicelib.core.pricing import OVERAGE_METER, TIERS, gb_seconds

MAX_BUCKETS_PER_RUN = 240


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


def row_state(bucket_start: int, settings: BillingFlags) -> State | None:
    """Shadow rows for every bucket while in shadow; live: pending at/after BILL_FROM, none before (consumed)."""
    if settings.SHADOW:
        return "shadow"
    return "pending" if bucket_start >= settings.BILL_FROM else None


@dataclass
class BucketPlan:
    rows: list[OutboxRow]
    unknown: list[dict[str, Any]]
    consumed: bool


def outbox_rows(
    org_id: str, bucket_start: int, width: int, values: dict[str, Decimal], state: State, samples: int,
    run_id: str, now: int, late_slot: int | None = None,
) -> list[OutboxRow]:
    """One row per meter with a value, in meter order: a bucket's first rows, or with `late_slot` the
    deltas of the stragglers that arrived in that slot, each under its deterministic identifier."""
    rows = []
    kind: Kind
    for meter, value in sorted(values.items()):
        if late_slot is None:
            row_id, kind = first_identifier(org_id, bucket_start, meter), "first"
        else:
            row_id, kind = late_identifier(org_id, bucket_start, meter, late_slot), "delta"
        rows.append(OutboxRow(id=row_id, org_id=org_id, bucket_start=bucket_start, bucket_end=bucket_start + width,
                              meter=meter, value=value, kind=kind, state=state, samples=samples, run_id=run_id,
                              created_at=now))
    return rows


def plan_bucket(
    bucket_start: int,
    aggregates: Iterable[OrgAggregate],
    orgs: dict[str, Org],
    settings: BillingFlags,
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
        rows += outbox_rows(agg.org_id, bucket_start, settings.BUCKET_SECONDS, mv.values, state, agg.samples,
                            run_id, now)
    return BucketPlan(rows=rows, unknown=unknown, consumed=state is None)


def plan_late_slot(
    slot: int, aggregates: Iterable[OrgAggregate], orgs: dict[str, Org], settings: BillingFlags, run_id: str,
    now: int,
) -> BucketPlan:
    """A late slot's stragglers, per (bucket, org), as delta rows named by (org, bucket, meter, slot)."""
    rows: list[OutboxRow] = []
    unknown: list[dict[str, Any]] = []
    for agg in sorted(aggregates, key=lambda a: (a.bucket_start, a.org_id)):
        mode = orgs[agg.org_id].billing_mode if agg.org_id in orgs else "legacy"
        mv = meter_values(agg.seconds_by_memory, mode)
        unknown += unbilled(agg.org_id, mv, bucket_start=agg.bucket_start, late=True)
        state = row_state(agg.bucket_start, settings)
        if state is not None:  # before BILL_FROM (live): the cells bill it
            rows += outbox_rows(agg.org_id, agg.bucket_start, settings.BUCKET_SECONDS, mv.values, state, agg.samples,
                                run_id, now, late_slot=slot)
    return BucketPlan(rows=rows, unknown=unknown, consumed=False)


def buckets_to_roll(cursor: int | None, now: int, settings: BillingFlags) -> list[int]:
    """Closed buckets from the cursor on (first run: a bounded look-back), oldest first."""
    width = settings.BUCKET_SECONDS
    last_closed = bucket_of(now - settings.GRACE_SECONDS, width) - width
    first = cursor if cursor is not None else last_closed - (settings.ROLLUP_LOOKBACK_BUCKETS - 1) * width
    return list(range(first, last_closed + 1, width))[:MAX_BUCKETS_PER_RUN]
