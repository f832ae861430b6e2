"""Bucket attribution: which seconds of a tick belong to which rollup bucket.

Pure functions over Decimal epoch seconds. A tick covers [end - interval, end);
it is split at every bucket boundary so each bucket gets exactly its own
seconds (the seed attributed the whole tick to the bucket of its timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chalicelib.core.money import exact


@dataclass(frozen=True)
class Slice:
    bucket_start: int
    start: Decimal
    end: Decimal

    @property
    def seconds(self) -> Decimal:
        return exact(self.end - self.start)


def bucket_of(ts: Decimal | int, width: int) -> int:
    """Start of the bucket holding instant ts (buckets are [start, start + width))."""
    if isinstance(ts, int):
        # Integer arithmetic: Decimal's 28-digit context cannot divide a 30-digit instant.
        return ts // width * width
    return int(Decimal(ts) // width) * width


def split(start: Decimal, end: Decimal, width: int) -> list[Slice]:
    """Cut [start, end) at bucket boundaries; an empty interval yields nothing."""
    slices: list[Slice] = []
    cursor = start
    while cursor < end:
        b = bucket_of(cursor, width)
        stop = min(end, Decimal(b + width))
        slices.append(Slice(bucket_start=b, start=cursor, end=stop))
        cursor = stop
    return slices


def overlap(start: Decimal, end: Decimal, window_from: int, window_to: int) -> Decimal:
    """Seconds of [start, end) inside [window_from, window_to)."""
    lo = max(start, Decimal(window_from))
    hi = min(end, Decimal(window_to))
    return exact(hi - lo) if hi > lo else exact(0)


def is_closed(bucket_start: int, width: int, grace: int, now: int) -> bool:
    """A bucket may be rolled once its end plus the grace period has passed."""
    return bucket_start + width + grace <= now


def buckets_between(first: int, last_exclusive: int, width: int) -> range:
    """Bucket starts b with first <= b < last_exclusive (first aligned down)."""
    return range(bucket_of(first, width), last_exclusive, width)
