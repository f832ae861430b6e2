"""Per-bucket, per-org usage: the one aggregation that rollup and parity share.

`aggregate` is pure and streams: memory is bounded by orgs x memory sizes,
not by samples. `settle` is the shell that aggregates a closed bucket once and
stores the result, so every later reader (the rollup's emit step, each cell
asking for parity) reads one small partition instead of the samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from chalicelib.core.buckets import is_closed
from chalicelib.core.money import exact
from chalicelib.observability import logger
from chalicelib.ports import BillingStore, OrgAggregate, StoredSample
from chalicelib.settings import Settings


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


def settle(store: BillingStore, settings: Settings, bucket_start: int, now: int) -> list[OrgAggregate] | None:
    """The stored aggregates of a closed bucket, computing and storing them on first use.

    None while the bucket is still open (its samples may still change).
    """
    if not is_closed(bucket_start, settings.BUCKET_SECONDS, settings.GRACE_SECONDS, now):
        return None
    if store.bucket_state(bucket_start) is not None:
        return store.aggregates(bucket_start)
    if not settings.HOME_REGION:
        return None  # conditional writes belong to the home region; read the raw samples instead
    aggs = aggregate(bucket_start, store.bucket_samples(bucket_start))
    if store.save_aggregates(bucket_start, aggs, {"settled_at": now}):
        logger.info("bucket_settled", extra={"bucket_start": bucket_start, "orgs": len(aggs)})
        return aggs
    # Another writer settled it between our check and our write: theirs is identical, read it.
    return store.aggregates(bucket_start)
