"""Outbox rows: one meter event to ship to Stripe, with a deterministic identifier.

States and their only transitions (each a conditional write):
    shadow  -> pending      (promotion, when live and bucket_start >= BILL_FROM)
    pending -> sent         (Stripe accepted it, or already had its identifier)
    pending -> unbillable   (bucket older than Stripe's 35-day window)
    pending -> failed       (Stripe rejected it for good; an operator requeues it)
    failed  -> pending      (operator requeue)
    sent    -> cancelled    (cutover rollback: Stripe accepted a meter event adjustment cancelling it)
    sent    -> failed       (Stripe's meter error report: accepted, then not applied; services/meter_errors.py)
    failed  -> resent       (operator re-send after such a report: a new row, under a new identifier)
    pending -> shadow       (cutover rollback: a row of a bucket the cells billed must never be sent)
    shadow  -> sent         (a send in flight as the rollback demoted its row: Stripe holds it, so the row
                             says so, and a rollback run cancels it)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

State = Literal["shadow", "pending", "sent", "unbillable", "failed", "cancelled", "resent"]
Kind = Literal["first", "delta"]
QUEUED_STATES = ("shadow", "pending")
# The `queue` index's partitions: the queued states, and failed rows so an operator can find them.
INDEXED_STATES = (*QUEUED_STATES, "failed")
# Each indexed state is spread over this many index partition keys ("pending#0".."pending#7"): every row
# enters its state's partition and leaves it again, two index writes, and one partition takes at most
# 1,000 writes/s; one key per state would cap the send at 500 rows/s (docs/capacity.md "Send").
QUEUE_SHARDS = 8


def queue_key(state: str, row_id: str) -> str:
    """The `queue` index key of a row in an indexed state: its state and a shard fixed by its id."""
    return f"{state}#{zlib.crc32(row_id.encode()) % QUEUE_SHARDS}"


def queue_keys(state: str) -> list[str]:
    """Every index key a row of `state` may be under: the shards, and the bare state rows written before them."""
    return [state, *(f"{state}#{k}" for k in range(QUEUE_SHARDS))]


@dataclass(frozen=True)
class OutboxRow:
    id: str
    org_id: str
    bucket_start: int
    bucket_end: int
    meter: str
    value: Decimal
    kind: Kind
    state: State
    samples: int = 0
    run_id: str = ""
    created_at: int = 0
    sent_at: int | None = None
    detail: str | None = None

    @property
    def queue(self) -> str | None:
        """The index partition that finds this row again (sparse: only queued and failed rows are indexed)."""
        return self.state if self.state in INDEXED_STATES else None

    def moved(self, state: State) -> OutboxRow:
        return replace(self, state=state)


def first_identifier(org_id: str, bucket_start: int, meter: str) -> str:
    """CONTRACT 5: the first emission of (org, bucket, meter)."""
    return f"{org_id}:{bucket_start}:{meter}"


def late_identifier(org_id: str, bucket_start: int, meter: str, slot: int) -> str:
    """A straggler delta: the stragglers of (org, bucket, meter) that arrived in one late slot (replay-safe:
    a slot is closed before it is billed, so the same identifier always carries the same value)."""
    return f"{org_id}:{bucket_start}:{meter}:late:{slot}"
