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
from chalicelib.outbox import OutboxRow, State
from chalicelib.samples import Sample


class StoreUnavailable(Exception):
    """The store failed or throttled; the caller answers 503 so the sender retries."""


class StoreRejected(Exception):
    """The store refused the request for good (a key too long, a value of the wrong type):
    retrying can never succeed, so the caller answers 4xx (a signed webhook: 200, logged)."""


@dataclass(frozen=True)
class QuarantineItem:
    quarantine_id: str
    kind: str  # "invalid" (the envelope is malformed) or "unknown_org" (replayable)
    reason: str
    cell_id: str
    raw_json: str
    received_at: int
    # Set when raw_json is only a prefix: the whole envelope's SHA-256 and length (it is in the raw archive).
    raw_sha256: str | None = None
    raw_length: int | None = None


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


@dataclass(frozen=True)
class LateChunk:
    """Late samples of one (org, bucket), billed together: delta rows, aggregate update and
    flag removal commit atomically, so a crash or a racing run can never bill them twice."""

    org_id: str
    bucket_start: int
    rows: list[OutboxRow]
    seconds_by_memory: dict[int, Decimal]
    event_ids: list[str]


@dataclass(frozen=True)
class LateSignal:
    """Whether the late index can hold anything new since the rollup last swept it.

    `version` is bumped before every write that may add a late sample; the rest
    is the rollup's own record of what it observed and when.
    """

    version: int = 0
    seen_version: int | None = None
    seen_at: int = 0
    swept_version: int | None = None
    swept_at: int = 0


class BillingStore(ABC):
    # --- orgs ---
    @abstractmethod
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]: ...

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def put_org(self, org: Org) -> Org: ...

    @abstractmethod
    def update_org(self, org_id: str, fields: dict[str, Any], now: int) -> Org:
        """Set only `fields` (creating the org if new), leaving every other attribute as stored."""

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

    @abstractmethod
    def mark_bucket_rolled(self, bucket_start: int, report: dict[str, Any]) -> bool:
        """aggregated -> rolled, once; False if it was rolled already."""

    # --- the rollup's lease and cursor ---
    @abstractmethod
    def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool: ...

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def cursor(self, name: str) -> int | None: ...

    @abstractmethod
    def advance_cursor(self, name: str, value: int) -> None:
        """Move the cursor forward (never back)."""

    # --- outbox ---
    @abstractmethod
    def create_outbox_rows(self, rows: list[OutboxRow]) -> int:
        """Create rows that do not exist yet (an existing row keeps its state); returns how many were new."""

    @abstractmethod
    def outbox_queue(self, queue: str, min_bucket: int = 0, limit: int = 1000) -> list[OutboxRow]: ...

    @abstractmethod
    def get_outbox_row(self, row_id: str) -> OutboxRow | None: ...

    @abstractmethod
    def transition(self, row_id: str, expected: State, new: State, now: int, detail: str | None = None) -> bool:
        """Conditional state change; False if the row was not in `expected`."""

    # --- stragglers ---
    @abstractmethod
    def late_samples(self, limit: int = 10_000) -> list[StoredSample]: ...

    @abstractmethod
    def late_signal(self) -> LateSignal: ...

    @abstractmethod
    def save_late_sweep(self, signal: LateSignal) -> None:
        """Record the rollup's fields of `signal`, leaving the version (ingest's) as it is."""

    @abstractmethod
    def commit_late_chunk(self, chunk: LateChunk, now: int) -> bool:
        """Atomically: create the delta rows, add to the aggregate, clear the samples' late flags."""
