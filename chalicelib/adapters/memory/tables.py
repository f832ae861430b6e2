"""What the in-memory store holds: DynamoStore's four tables, keyed as there (one lock for all)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import Sample


@dataclass
class Aggregate:
    seconds_by_memory: dict[int, Decimal]
    samples: int
    late_slots: set[int] = field(default_factory=set)  # the late slots added into it


@dataclass(frozen=True)
class Lease:
    owner: str
    until: int


@dataclass
class MemoryTables:
    """Everything DynamoStore keeps in its four tables, keyed as there."""

    orgs: dict[str, Org] = field(default_factory=dict)
    samples: dict[int, dict[str, Sample]] = field(default_factory=dict)  # bucket -> event id -> sample
    quarantine: dict[str, QuarantineItem] = field(default_factory=dict)
    buckets: dict[int, dict[str, Any]] = field(default_factory=dict)
    aggregates: dict[tuple[int, str], Aggregate] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, OutboxRow] = field(default_factory=dict)
    late_slots: dict[int, dict[str, Any]] = field(default_factory=dict)  # slot -> {"swept", "report"}
    late_index: dict[int, dict[str, tuple[int, str]]] = field(default_factory=dict)  # slot -> late_sk -> key
    shard_counts: dict[int, int] = field(default_factory=dict)  # bucket -> shards it was written over
    partials: dict[tuple[int, int], list[OrgAggregate]] = field(default_factory=dict)  # (bucket, shard)
    fanout_claims: dict[int, int] = field(default_factory=dict)  # bucket -> when its tasks were last enqueued
    late_partials: dict[tuple[int, int], list[OrgAggregate]] = field(default_factory=dict)  # (slot, shard)
    late_claims: dict[int, int] = field(default_factory=dict)  # slot -> when its tasks were last enqueued
    lock: threading.RLock = field(default_factory=threading.RLock)
