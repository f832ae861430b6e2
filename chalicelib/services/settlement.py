"""Per-bucket, per-org usage: the one aggregation that rollup and parity share.

`aggregate` is pure and streams: memory is bounded by orgs x memory sizes,
not by samples. `settle` is the shell that aggregates a closed bucket once and
stores the result, so every later reader (the rollup's emit step, each cell
asking for parity) reads one small partition instead of the samples.
"""

from __future__ import annotations

from chalicelib.core.aggregation import OrgAggregate, aggregate
from chalicelib.core.buckets import is_closed
from chalicelib.observability import logger
from chalicelib.ports import BillingStore
from chalicelib.settings import Settings


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
