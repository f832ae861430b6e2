"""A closed bucket's settled aggregates: what parity answers from, never the raw samples.

The rollup's reducer settles a bucket once every shard's partial is in (services/rollup_fanout.py);
every later reader (the emit step, each cell asking for parity) reads one small partition. A reader
that finds a closed bucket not settled yet nudges the pipeline (`request_settle`) instead of reading
the samples itself: the API Lambda's cost stays independent of the bucket's size.
"""

from __future__ import annotations

from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.buckets import is_closed
from chalicelib.observability import logger
from chalicelib.ports import AggregateStore, TaskQueue
from chalicelib.services.rollup_fanout import ShardedStore, enqueue_bucket
from chalicelib.settings import Settings


def settled(store: AggregateStore, bucket_start: int) -> list[OrgAggregate] | None:
    """The stored aggregates of a settled bucket; None while it is not settled."""
    if store.bucket_state(bucket_start) is None:
        return None
    return store.aggregates(bucket_start)


def request_settle(store: ShardedStore, settings: Settings, queue: TaskQueue | None, bucket_start: int,
                   now: int) -> int:
    """Enqueue a closed, unsettled bucket's tasks now rather than at the next scheduled run (at most once
    per FANOUT_RETRY_SECONDS, whoever asks); how many. Nothing without a queue or outside the home region."""
    if queue is None or not settings.HOME_REGION:
        return 0
    if not is_closed(bucket_start, settings.BUCKET_SECONDS, settings.GRACE_SECONDS, now):
        return 0
    sent = enqueue_bucket(store, queue, settings, bucket_start, now)
    if sent:
        logger.info("bucket_settle_requested", extra={"bucket_start": bucket_start, "tasks": sent})
    return sent
