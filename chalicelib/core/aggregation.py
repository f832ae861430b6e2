"""Per-bucket, per-org usage: the one aggregation that the rollup and parity share.

`aggregate` streams: memory is bounded by orgs x memory sizes, not by samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from chalicelib.core.money import exact
from chalicelib.core.samples import StoredSample


@dataclass(frozen=True)
class OrgAggregate:
    """Raw pro usage of one org in one bucket: seconds per memory size, and the sample count."""

    org_id: str
    bucket_start: int
    seconds_by_memory: dict[int, Decimal]
    samples: int
    # The late slots already added into this stored aggregate (parity counts their stragglers once).
    late_slots: frozenset[int] = frozenset()

    @property
    def gb_seconds(self) -> Decimal:
        from chalicelib.core.pricing import gb_seconds

        return sum((gb_seconds(mb, s) for mb, s in self.seconds_by_memory.items()), Decimal(0))


def aggregate(bucket_start: int, samples: Iterable[StoredSample], include_late: bool = False) -> list[OrgAggregate]:
    """Sum seconds per (org, memory size). Late samples are left to the late path unless asked."""
    seconds: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        if s.late and not include_late:
            continue
        seconds[s.org_id][s.memory_mb] += s.seconds
        counts[s.org_id] += 1
    return [
        OrgAggregate(
            org_id=org,
            bucket_start=bucket_start,
            seconds_by_memory={mb: exact(v) for mb, v in sorted(by_mb.items())},
            samples=counts[org],
        )
        for org, by_mb in sorted(seconds.items())
    ]


def combine(bucket_start: int, partials: Iterable[OrgAggregate]) -> list[OrgAggregate]:
    """The bucket's aggregates from its shards' partials: equal to `aggregate` over every shard's samples.

    Each partial is already quantized to microseconds, and so is every sample, so the sums are exact and
    the order the partials arrive in changes nothing.
    """
    seconds: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    counts: dict[str, int] = defaultdict(int)
    for p in partials:
        for mb, s in p.seconds_by_memory.items():
            seconds[p.org_id][mb] += s
        counts[p.org_id] += p.samples
    return [
        OrgAggregate(org, bucket_start, {mb: exact(v) for mb, v in sorted(by_mb.items())}, counts[org])
        for org, by_mb in sorted(seconds.items())
    ]


def aggregate_late(samples: Iterable[StoredSample]) -> list[OrgAggregate]:
    """A late slot's stragglers (of any buckets) per (bucket, org): every one counts, they are all late."""
    seconds: dict[tuple[int, str], dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for s in samples:
        seconds[(s.bucket_start, s.org_id)][s.memory_mb] += s.seconds
        counts[(s.bucket_start, s.org_id)] += 1
    return [
        OrgAggregate(org, b, {mb: exact(v) for mb, v in sorted(by_mb.items())}, counts[(b, org)])
        for (b, org), by_mb in sorted(seconds.items())
    ]


def combine_by_bucket(partials: Iterable[OrgAggregate]) -> list[OrgAggregate]:
    """`combine` for partials of several buckets (a late slot's): one aggregate per (bucket, org)."""
    by_bucket: dict[int, list[OrgAggregate]] = defaultdict(list)
    for p in partials:
        by_bucket[p.bucket_start].append(p)
    return [a for b in sorted(by_bucket) for a in combine(b, by_bucket[b])]


@dataclass(frozen=True)
class BucketState:
    """A bucket the rollup has settled: `aggregated` (aggregates stored), then `rolled` (its rows written)."""

    bucket_start: int
    state: Literal["aggregated", "rolled"]
    orgs: int

    @property
    def rolled(self) -> bool:
        return self.state == "rolled"
