"""The store port: what the billing core needs from a durable store.

The core (ingest, rollup, parity, webhook) depends on this interface only;
`store.dynamodb.DynamoStore` is the one adapter. Every method that changes
billing state is either an idempotent put of deterministic content or a
conditional write, so a retry or a racing Lambda can never apply it twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.orgs import Org
from chalicelib.samples import Sample


class StoreUnavailable(Exception):
    """The store failed or throttled; the caller answers 503 so the sender retries."""


@dataclass(frozen=True)
class QuarantineItem:
    quarantine_id: str
    kind: str  # "invalid" (the envelope is malformed) or "unknown_org" (replayable)
    reason: str
    cell_id: str
    raw_json: str
    received_at: int


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


@dataclass(frozen=True)
class OrgAggregate:
    """Raw pro usage of one org in one bucket: seconds per memory size, and the sample count."""

    org_id: str
    bucket_start: int
    seconds_by_memory: dict[int, Decimal]
    samples: int

    @property
    def gb_seconds(self) -> Decimal:
        from chalicelib.pricing import gb_seconds

        return sum((gb_seconds(mb, s) for mb, s in self.seconds_by_memory.items()), Decimal(0))


class BillingStore(ABC):
    # --- orgs ---
    @abstractmethod
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]: ...

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def put_org(self, org: Org) -> Org: ...

    # --- samples ---
    @abstractmethod
    def put_samples(self, samples: list[Sample]) -> int:
        """Store samples; returns how many late samples were new (replays of late ones are skipped)."""

    @abstractmethod
    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        """Every sample of a bucket, strongly consistent (the rollup's and parity's read)."""

    # --- quarantine ---
    @abstractmethod
    def put_quarantine(self, items: list[QuarantineItem]) -> None: ...

    @abstractmethod
    def quarantine(self, kind: str | None = None) -> Iterator[QuarantineItem]: ...

    @abstractmethod
    def delete_quarantine(self, quarantine_ids: list[str]) -> None: ...

    # --- per-bucket aggregates (rollup and parity share them) ---
    @abstractmethod
    def bucket_state(self, bucket_start: int) -> dict[str, Any] | None: ...

    @abstractmethod
    def save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        """Store a closed bucket's aggregates once; False if another writer already did."""

    @abstractmethod
    def aggregates(self, bucket_start: int) -> list[OrgAggregate]: ...
