"""The rollup fanned out: what a coordinator hands a worker, on the wire of a queue.

One task per (bucket, shard): a worker reads that one shard and writes its partial; the worker that
finds every partial present reduces them (services/rollup_fanout.py). A closed late slot's stragglers go
the same way, one task per index partition (services/late_fanout.py). Tasks are plain JSON, so a
duplicate, a reordering or a redrive from the dead-letter queue is the same task again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Self

MAX_SHARDS = 1000


class TaskError(ValueError):
    """A message that is no task: never retried into success (it ends on the dead-letter queue)."""


@dataclass(frozen=True, order=True)
class ShardTask:
    """One shard of a bucket (`late` False) or one index partition of a late slot (`late` True)."""

    bucket_start: int  # the bucket's start, or the late slot's
    shard: int
    late: bool = False

    def body(self) -> str:
        if self.late:
            return json.dumps({"kind": "late", "slot": self.bucket_start, "shard": self.shard}, sort_keys=True)
        return json.dumps({"kind": "shard", "bucket": self.bucket_start, "shard": self.shard}, sort_keys=True)


def task_fields(body: str, *kinds: str) -> dict[str, Any]:
    """The JSON object of a task of one of `kinds` (the queues' tasks say which they are), or TaskError."""
    try:
        data = json.loads(body)
    except ValueError:
        raise TaskError(f"not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        raise TaskError(f"not a {' or '.join(kinds)} task: {body[:80]!r}")
    return data


def parse_task(body: str) -> ShardTask:
    data = task_fields(body, "shard", "late")
    kind = data["kind"]
    start, shard = data.get("slot" if kind == "late" else "bucket"), data.get("shard")
    if type(start) is not int or type(shard) is not int or start < 0 or not 0 <= shard < MAX_SHARDS:
        raise TaskError(f"bad bucket or shard: {body[:80]!r}")
    return ShardTask(start, shard, kind == "late")


def tasks_for(start: int, shards: int, done: frozenset[int] = frozenset(), late: bool = False) -> list[ShardTask]:
    """The tasks of a bucket (or late slot) whose partial is not written yet."""
    return [ShardTask(start, k, late) for k in range(shards) if k not in done]


def missing_shards(shards: int, done: frozenset[int]) -> list[int]:
    """Every shard must have its partial before the reduce: the bucket's usage is their sum."""
    return [k for k in range(shards) if k not in done]


@dataclass
class Walk:
    """What one coordinator's walk did: the reduces it ran (reports by bucket or slot start), what it left
    with the workers, and how many tasks it enqueued. A walk, the workers in process, a walk again: merged."""

    reports: dict[int, dict[str, Any]] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    enqueued: int = 0

    def merge(self, later: Self) -> Self:
        return replace(later, reports=self.reports | later.reports, enqueued=self.enqueued + later.enqueued)
