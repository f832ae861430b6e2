"""Scale events -> clipped intervals -> hourly usage per (org, meter).

``sandbox_scale_events`` rows are the cell's billing record: one row per
period a sandbox ran at one size. Every interval is clipped to a window as
``min(end or now, to) - max(start, from)``; the seed clipped only one edge and
attributed a whole interval to an hour it merely ended in (SEED-NOTES defect 2).
All sums are integers (MB-microseconds, microseconds); the one conversion to a
Decimal meter value happens at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from cellkit.core.timeutil import MICROS

MICRO = Decimal("0.000001")
METER_PREFIX = "sandbox_compute_sandbox_"
OVERAGE_METER = "sandbox_compute_sandbox_overage"
# CONTRACT section 5: the per-tier meters (a test pins these to chalicelib.core.pricing).
TIER_METERS: dict[int, str] = {mb: f"{METER_PREFIX}{mb // 1024}gb" for mb in (1024, 4096, 8192, 16384, 32768, 65536)}

BillingMode = Literal["legacy", "unified"]


@dataclass(frozen=True)
class ScaleEvent:
    event_id: str
    sandbox_id: str
    org_id: str
    memory_mb: int
    cpu_count: int
    started_us: int
    ended_us: int | None = None


@dataclass(frozen=True)
class OrgRow:
    """The cell's own org row (pre-cutover authority; last-resort plan source after it)."""

    org_id: str
    plan: str = "free"
    billing_mode: BillingMode = "legacy"
    stripe_customer_id: str | None = None
    max_memory_mb: int | None = None


@dataclass(frozen=True)
class UsageRow:
    org_id: str
    bucket_start: int  # unix seconds
    meter: str
    value: Decimal  # seconds (legacy tier meter) or GB-seconds (overage meter), 6 places


def clip_us(event: ScaleEvent, from_us: int, to_us: int, now_us: int) -> int:
    """Microseconds of ``event`` inside [from_us, to_us); an open event runs until ``now_us``."""
    end = event.ended_us if event.ended_us is not None else now_us
    return max(0, min(end, to_us) - max(event.started_us, from_us))


def mb_us_per_org(events: Iterable[ScaleEvent], from_us: int, to_us: int, now_us: int) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for ev in events:
        part = clip_us(ev, from_us, to_us, now_us)
        if part:
            out[ev.org_id] += ev.memory_mb * part
    return dict(out)


def gb_seconds(mb_us: int) -> Decimal:
    """MB-microseconds -> GB-seconds, rounded once, half-even, to six places."""
    return (Decimal(mb_us) / Decimal(1024 * MICROS)).quantize(MICRO, rounding=ROUND_HALF_EVEN)


def hour_usage(
    events: Iterable[ScaleEvent], orgs: Mapping[str, OrgRow], bucket_start: int, width: int, now_us: int
) -> tuple[list[UsageRow], list[tuple[str, int]]]:
    """Usage rows of pro orgs for one bucket, and (org, memory_mb) pairs no meter prices.

    Legacy orgs: seconds per tier meter; unified orgs: GB-seconds on the overage meter.
    """
    from_us, to_us = bucket_start * MICROS, (bucket_start + width) * MICROS
    seconds_us: dict[tuple[str, str], int] = defaultdict(int)
    mb_us: dict[str, int] = defaultdict(int)
    unpriced: set[tuple[str, int]] = set()
    for ev in events:
        org = orgs.get(ev.org_id)
        part = clip_us(ev, from_us, to_us, now_us)
        if org is None or org.plan != "pro" or part == 0:
            continue
        if org.billing_mode == "unified":
            mb_us[ev.org_id] += ev.memory_mb * part
        elif ev.memory_mb in TIER_METERS:
            seconds_us[(ev.org_id, TIER_METERS[ev.memory_mb])] += part
        else:
            unpriced.add((ev.org_id, ev.memory_mb))
    rows = [UsageRow(o, bucket_start, m, Decimal(us).scaleb(-6)) for (o, m), us in seconds_us.items()]
    rows += [UsageRow(o, bucket_start, OVERAGE_METER, gb_seconds(v)) for o, v in mb_us.items()]
    return sorted(rows, key=lambda r: (r.org_id, r.meter)), sorted(unpriced)


def meter_identifier(cell_id: str, org_id: str, bucket_start: int, meter: str) -> str:
    """The cell's own Stripe identifier, distinct from the edge's ``org:bucket:meter`` so that a bucket
    billed by both sides shows up as two events (the cutover's verify looks for exactly that)."""
    return f"cell:{cell_id}:{org_id}:{bucket_start}:{meter}"


def wire_value(value: Decimal) -> str:
    return f"{value.quantize(MICRO):.6f}"
