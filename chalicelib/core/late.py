"""Stragglers: samples written after their bucket could be read, billed later as deltas, one late slot at a time.

A straggler is written once, into its bucket's partition (conditionally: a replay of a sample already
counted is no straggler), and indexed under the LATE SLOT of its arrival: the ingest's clock floored to
LATE_SLOT_SECONDS, spread over LATE_SHARDS index partitions. Every write of slot s lands by
s + width + LATE_MARGIN_SECONDS (a write outlives no API Lambda timeout) and shows in the index
LATE_INDEX_LAG_SECONDS later: from then on the slot is CLOSED, nothing joins it, and the rollup sweeps it
fanned out like a bucket (services/late_fanout.py). Nothing is written per straggler after its ingest: the
sweep's writes are per slot and per (org, bucket, meter), so a straggler costs its item and its index entry
plus a share of those.
"""

from __future__ import annotations

from dataclasses import dataclass

# Index partitions per slot (each takes ~1,000 writes/s): stragglers are a few percent of the ticks.
LATE_SHARDS = 8


@dataclass(frozen=True)
class LateSlot:
    """A slot that received stragglers; `swept` once its delta rows and aggregate additions are written."""

    slot: int
    swept: bool = False


def slot_of(now: int, width: int) -> int:
    """The slot a straggler written at `now` joins."""
    return now - now % width


def slot_closed(slot: int, width: int, settle: int, now: int) -> bool:
    """Every straggler of the slot is written and visible in the index (settle = margin + index lag)."""
    return now >= slot + width + settle
