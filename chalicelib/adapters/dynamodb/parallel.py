"""Single-item conditional writes, several in flight at once.

DynamoDB has no conditional batch write: a write that must not overwrite (an outbox row, a bucket's
aggregate) is one PutItem with its own ConditionExpression. One after another at ~10 ms each, a bucket
of 100,000 meter events takes ~1,000 s, past a worker's timeout (docs/capacity.md, "the reducer"); a
few in flight at once keep each write exactly as conditional and take a fraction of that.

boto3's low-level client is thread-safe (its resources are not), so the threads share the adapter's
client; its connection pool is sized for OUTBOX_PUTS_AT_ONCE (chalicelib/bootstrap.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Outbox rows are keyed by their id, spread over the table's partitions: 32 in flight at ~10 ms each is
# ~3,200 writes/s, under a new on-demand table's initial 4,000 WRU/s and far under its 40,000 quota.
OUTBOX_PUTS_AT_ONCE = 32
# A bucket's aggregates share one partition key (`agg#<bucket>`): 8 in flight is ~800 writes/s, under the
# partition's 1,000 WCU/s, so they are not throttled into boto3's retries.
AGGREGATE_PUTS_AT_ONCE = 8


def count_each(write: Callable[[T], bool], items: Sequence[T], at_once: int) -> int:
    """Run `write` on every item, up to `at_once` at a time; how many returned True (see `each_at_once`: a retry
    after a failure makes the writes not made, each still conditional)."""
    return sum(each_at_once(write, items, at_once))


def each_at_once(call: Callable[[T], R], items: Sequence[T], at_once: int) -> list[R]:
    """`call` on every item, up to `at_once` at a time; the answers in the items' order. With `at_once` 1 (or one
    item) the calls run in order in the caller's thread. Reads of separate partitions (each bound by its own
    3,000 RCU/s) overlap instead of queueing. The first failure is raised once the calls already running end;
    the ones not started are not made."""
    if at_once <= 1 or len(items) <= 1:
        return [call(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(at_once, len(items))) as pool:
        futures = [pool.submit(call, i) for i in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
