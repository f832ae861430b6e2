"""Ground truth for the cutover run, and the seam's accounting, as pure functions over plain data.

The truth is computed from what the simulation *did* (each sandbox's running
segments, each org's plan over time), never from the cell kit's clipping or
the edge's rollup, so comparing it with what Stripe received is a real check.
All sums are integers: microseconds for the legacy tier meters (seconds),
micro-GB-seconds for the unified overage meter (sizes are multiples of 1024 MB,
so `memory_mb * us / 1024` is exact). One conversion to Decimal at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

US = 1_000_000
METER_PREFIX = "sandbox_compute_sandbox_"
OVERAGE_METER = "sandbox_compute_sandbox_overage"
TIER_SIZES = (1024, 4096, 8192, 16384, 32768, 65536)

Mode = Literal["legacy", "unified"]


@dataclass(frozen=True)
class Segment:
    """A sandbox running at one size over [start_us, end_us)."""

    sandbox_id: str
    org_id: str
    memory_mb: int
    start_us: int
    end_us: int


@dataclass(frozen=True)
class PlanChange:
    org_id: str
    at_us: int
    plan: str


def tier_meter(memory_mb: int) -> str:
    return f"{METER_PREFIX}{memory_mb // 1024}gb"


def pro_periods(changes: Sequence[PlanChange], org_id: str, end_us: int) -> list[tuple[int, int]]:
    """[from, to) spans in which the org is pro, from its plan changes (the first is its initial plan)."""
    mine = sorted((c for c in changes if c.org_id == org_id), key=lambda c: c.at_us)
    spans: list[tuple[int, int]] = []
    for i, change in enumerate(mine):
        if change.plan != "pro":
            continue
        until = mine[i + 1].at_us if i + 1 < len(mine) else end_us
        if until > change.at_us:
            spans.append((change.at_us, until))
    return spans


def overlap(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if hi > lo else None


def micro_units(mode: Mode, memory_mb: int, us: int) -> tuple[str, int]:
    """(meter, value in micro-units) for `us` microseconds at `memory_mb` (CONTRACT section 5)."""
    if mode == "unified":
        if memory_mb % 1024:
            raise ValueError(f"{memory_mb} MB: the simulation keeps sizes at multiples of 1024 MB (exact sums)")
        return OVERAGE_METER, memory_mb * us // 1024
    if memory_mb not in TIER_SIZES:
        raise ValueError(f"a legacy org at {memory_mb} MB has no tier meter")
    return tier_meter(memory_mb), us


def billable_spans(segments: Iterable[Segment], changes: Sequence[PlanChange],
                   end_us: int) -> list[tuple[Segment, int, int]]:
    """Each segment's parts inside its org's pro periods."""
    periods: dict[str, list[tuple[int, int]]] = {}
    out = []
    for seg in segments:
        if seg.org_id not in periods:
            periods[seg.org_id] = pro_periods(changes, seg.org_id, end_us)
        for period in periods[seg.org_id]:
            part = overlap((seg.start_us, seg.end_us), period)
            if part:
                out.append((seg, *part))
    return out


def owed(segments: Iterable[Segment], changes: Sequence[PlanChange], modes: Mapping[str, Mode],
         end_us: int) -> dict[tuple[str, str], int]:
    """Micro-units owed per (org, meter): the ground truth."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for seg, lo, hi in billable_spans(segments, changes, end_us):
        meter, value = micro_units(modes[seg.org_id], seg.memory_mb, hi - lo)
        out[(seg.org_id, meter)] += value
    return dict(out)


def gb_us_per_bucket(segments: Iterable[Segment], changes: Sequence[PlanChange], width_s: int,
                     end_us: int) -> dict[int, int]:
    """Pro MB-microseconds per bucket start (for the chart; every pro org, any billing mode)."""
    out: dict[int, int] = defaultdict(int)
    width = width_s * US
    for seg, lo, hi in billable_spans(segments, changes, end_us):
        at = lo
        while at < hi:
            bucket = at - at % width
            step = min(hi, bucket + width) - at
            out[bucket // US] += seg.memory_mb * step
            at += step
    return dict(out)


def mb_us_to_gb_s(mb_us: int) -> Decimal:
    return Decimal(mb_us) / Decimal(1024 * US)


def to_units(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


# --- Stripe's meter events, by who sent them ---------------------------------------------------

@dataclass(frozen=True)
class MeterEvent:
    identifier: str
    meter: str
    customer: str
    value: Decimal
    cancelled: bool


@dataclass(frozen=True)
class Attributed:
    side: str  # "cell:<id>" or "edge"
    org_id: str
    bucket_start: int
    meter: str
    value: Decimal
    late: bool


def attribute(event: MeterEvent) -> Attributed:
    """Who sent it, from its identifier: the cells' `cell:{cell}:{org}:{bucket}:{meter}`, the edge's
    `{org}:{bucket}:{meter}` (plus `:late:{digest}` for a straggler delta)."""
    parts = event.identifier.split(":")
    if parts[0] == "cell":
        return Attributed(f"cell:{parts[1]}", parts[2], int(parts[3]), parts[4], event.value, False)
    return Attributed("edge", parts[0], int(parts[1]), parts[2], event.value, "late" in parts[3:])


@dataclass(frozen=True)
class OrgMeterLine:
    org_id: str
    meter: str
    truth: Decimal
    cells_before_t: Decimal
    edge_from_t: Decimal
    stripe: Decimal
    difference: Decimal  # stripe - truth
    wrong_side: Decimal  # cells from T plus edge before T: must be zero too


def seam_lines(truth: Mapping[tuple[str, str], int], events: Sequence[Attributed],
               stripe: Mapping[tuple[str, str], Decimal], t: int) -> list[OrgMeterLine]:
    cells: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    edge: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    wrong: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in events:
        key = (e.org_id, e.meter)
        on_its_side = (e.side == "edge") == (e.bucket_start >= t)
        (edge if e.side == "edge" else cells)[key] += e.value
        if not on_its_side:
            wrong[key] += e.value
    keys = sorted(set(truth) | set(cells) | set(edge) | set(stripe))
    return [OrgMeterLine(org, meter, to_units(truth.get((org, meter), 0)), cells[(org, meter)],
                         edge[(org, meter)], stripe.get((org, meter), Decimal(0)),
                         stripe.get((org, meter), Decimal(0)) - to_units(truth.get((org, meter), 0)),
                         wrong[(org, meter)])
            for org, meter in keys]


def billers_per_bucket(events: Sequence[Attributed]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for e in events:
        out[e.bucket_start].add(e.side)
    return {b: sorted(s) for b, s in sorted(out.items())}
