"""Where a usage tick is turned into billing samples (one per bucket it touches).

A sample's identity is (bucket, event id): the same envelope arriving again,
in any batch, produces the same samples with the same content, so storing it
twice changes nothing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal

from chalicelib.core.buckets import split
from chalicelib.core.envelopes import Tick

# Writes of one bucket spread over this many partition keys: one DynamoDB partition takes ~1,000 WCU/s,
# so 32 shards carry ~32,000 ticks/s per bucket. The count is a setting (SAMPLE_SHARDS) recorded with
# each bucket when its first sample is written; a bucket with no record was written before that, with 32.
SAMPLE_SHARDS = 32


@dataclass(frozen=True)
class Sample:
    event_id: str
    org_id: str
    sandbox_id: str
    cell_id: str
    worker_id: str
    memory_mb: int
    cpu_count: int
    bucket_start: int
    start: Decimal
    end: Decimal
    seconds: Decimal
    expires_at: int
    late: bool = False


def unrecorded_shards(bucket_start: int, first_recorded: int | None) -> int:
    """The shards of a bucket with no recorded count. From the first recorded bucket on, every bucket a
    sample was written to has its record (written before the sample), so none: nothing to read. Before
    it, the bucket may have been written before counts were recorded: the 32 shards of that time."""
    return 0 if first_recorded is not None and bucket_start >= first_recorded else SAMPLE_SHARDS


def shard_of(event_id: str, shards: int = SAMPLE_SHARDS) -> int:
    # crc32, not hash(): Python's str hash is salted per process.
    return zlib.crc32(event_id.encode()) % shards


def samples_from_tick(tick: Tick, org_id: str, width: int, retention: int, late_after: int) -> list[Sample]:
    """Split the tick at bucket boundaries; parts whose bucket may already be rolled are late.

    ``late_after``: buckets starting before it may have been read by the rollup.
    """
    env, usage = tick.envelope, tick.usage
    return [
        Sample(
            event_id=env.id,
            org_id=org_id,
            sandbox_id=env.sandbox_id,
            cell_id=env.cell_id,
            worker_id=env.worker_id,
            memory_mb=usage.memory_mb,
            cpu_count=usage.cpu_count,
            bucket_start=piece.bucket_start,
            start=piece.start,
            end=piece.end,
            seconds=piece.seconds,
            expires_at=piece.bucket_start + width + retention,
            late=piece.bucket_start < late_after,
        )
        for piece in split(tick.start, tick.end, width)
        if piece.seconds > 0
    ]


def late_cutoff(now: int, width: int, grace: int, margin: int) -> int:
    """Buckets starting before the returned instant may be read by a rollup already.

    The rollup reads bucket b once b + width + grace <= now; a write that starts
    ``margin`` seconds before that deadline (margin > the API Lambda timeout)
    lands before the read, so only buckets past that point need the late path.
    """
    return now + margin - grace - width + 1


@dataclass(frozen=True)
class StoredSample:
    """A sample as the rollup reads it back (only what aggregation needs)."""

    event_id: str
    org_id: str
    memory_mb: int
    bucket_start: int
    start: Decimal
    end: Decimal
    seconds: Decimal
    late: bool
