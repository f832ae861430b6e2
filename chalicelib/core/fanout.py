"""The rollup fanned out: what a coordinator hands a worker, on the wire of a queue.

One task per (bucket, shard): a worker reads that one shard and writes its partial; the worker that
finds every partial present reduces them (services/rollup_fanout.py). Tasks are plain JSON, so a
duplicate, a reordering or a redrive from the dead-letter queue is the same task again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_SHARDS = 1000


class TaskError(ValueError):
    """A message that is no task: never retried into success (it ends on the dead-letter queue)."""


@dataclass(frozen=True, order=True)
class ShardTask:
    bucket_start: int
    shard: int

    def body(self) -> str:
        return json.dumps({"kind": "shard", "bucket": self.bucket_start, "shard": self.shard}, sort_keys=True)


def parse_task(body: str) -> ShardTask:
    try:
        data = json.loads(body)
    except ValueError:
        raise TaskError(f"not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict) or data.get("kind") != "shard":
        raise TaskError(f"not a shard task: {body[:80]!r}")
    bucket, shard = data.get("bucket"), data.get("shard")
    if type(bucket) is not int or type(shard) is not int or bucket < 0 or not 0 <= shard < MAX_SHARDS:
        raise TaskError(f"bad bucket or shard: {body[:80]!r}")
    return ShardTask(bucket, shard)


def tasks_for(bucket_start: int, shards: int, done: frozenset[int] = frozenset()) -> list[ShardTask]:
    """The tasks of a bucket whose partial is not written yet."""
    return [ShardTask(bucket_start, k) for k in range(shards) if k not in done]


def missing_shards(shards: int, done: frozenset[int]) -> list[int]:
    """Every shard must have its partial before the reduce: the bucket's usage is their sum."""
    return [k for k in range(shards) if k not in done]
