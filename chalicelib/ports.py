"""The ports: the services' stores, queue and clock, as small typed Protocols (Stripe's are in stripe_ports.py,
the free tier's in credit_ports.py, the operator's view's in operator_ports.py).

Services depend on these only, each on the roles it uses (a service that needs several names their union
beside itself); adapters (chalicelib/adapters/) implement them: DynamoDB and in-memory for the stores.
Every store method that changes billing state is an idempotent put of
deterministic content or a conditional write (False when its condition did not
hold), so a retry or a racing Lambda can never apply it twice. The exactly-once
rules live in the services; adapters only keep these promises.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from chalicelib.core.aggregation import BucketState, OrgAggregate
from chalicelib.core.catalog import CatalogEntry
from chalicelib.core.cell_reports import CellStatus, ParityReport
from chalicelib.core.late import LateSlot
from chalicelib.core.orgs import Org, Plan
from chalicelib.core.outbox import OutboxRow, State
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import Sample, StoredSample
from chalicelib.core.send_tasks import GroupedMessage
from chalicelib.core.subscriptions import Subscription


class StoreUnavailable(Exception):
    """The store failed or throttled; the caller answers 503 so the sender retries."""


class StoreRejected(Exception):
    """The store refused the request for good (a key too long, a value of the wrong type):
    retrying can never succeed, so the caller answers 4xx (a signed webhook: 200, logged)."""


class Clock(Protocol):
    def now(self) -> int:
        """Unix seconds."""
        ...


class Archive(Protocol):
    """Raw ingest batches, kept so samples can be rebuilt from them."""

    def put_batch(self, cell_id: str, received_at: int, body: bytes) -> str | None: ...

    def batches(self, cell_id: str | None, day: str) -> Iterator[tuple[str, bytes]]: ...


class OrgStore(Protocol):
    """The edge's org records (plan authority)."""

    @abstractmethod
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]: ...

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def put_org(self, org: Org) -> Org: ...

    @abstractmethod
    def update_org(self, org_id: str, fields: dict[str, Any], now: int) -> Org:
        """Set only `fields` (creating the org if new), leaving every other attribute as stored."""


class SampleStore(Protocol):
    """Billing samples, one item per (event, bucket)."""

    @abstractmethod
    def put_samples(self, samples: list[Sample], late_slot: int | None = None) -> int:
        """Store samples; returns how many late samples were new (replays of late ones are skipped). Late
        samples join `late_slot` (recorded first; refused with StoreUnavailable once that slot is swept);
        a batch with a late sample and no slot is a programming error (ValueError)."""

    @abstractmethod
    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        """Every sample of a bucket, strongly consistent, shard after shard."""

    @abstractmethod
    def bucket_shard_count(self, bucket_start: int) -> int:
        """How many shards the bucket's samples were written over (recorded with its first sample)."""

    @abstractmethod
    def shard_samples(self, bucket_start: int, shard: int) -> Iterator[StoredSample]:
        """Every sample of one shard of a bucket, strongly consistent (a rollup worker's read)."""


class QuarantineStore(Protocol):
    """Envelopes kept aside: never lost, replayable."""

    @abstractmethod
    def put_quarantine(self, items: list[QuarantineItem]) -> None: ...

    @abstractmethod
    def quarantine(self, kind: str | None = None) -> Iterator[QuarantineItem]: ...

    @abstractmethod
    def delete_quarantine(self, quarantine_ids: list[str]) -> None: ...


class AggregateStore(Protocol):
    """A closed bucket's settled aggregates and its state."""

    @abstractmethod
    def bucket_state(self, bucket_start: int) -> BucketState | None: ...

    # `late=True`: the same for a late slot (its start in `bucket_start`), apart from the buckets' own.
    @abstractmethod
    def put_partial(self, bucket_start: int, shard: int, aggregates: list[OrgAggregate], late: bool = False) -> None:
        """Store one shard's partial (deterministic content: a second write of it changes nothing);
        it counts as present only once all of it is written."""

    @abstractmethod
    def partial_shards(self, bucket_start: int, late: bool = False) -> frozenset[int]:
        """The shards whose partial is wholly written."""

    @abstractmethod
    def partials(self, bucket_start: int, late: bool = False) -> list[OrgAggregate]:
        """Every written partial's rows, shard after shard (read once every shard's is present)."""

    @abstractmethod
    def claim_fanout(self, bucket_start: int, now: int, every: int, late: bool = False) -> bool:
        """True for the first caller, and again once `every` seconds have passed: who enqueues the tasks."""

    @abstractmethod
    def save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        """Store a closed bucket's aggregates once; False if another writer already did. Each aggregate is
        created only if absent: one stored already (a late slot may have added to it) is kept as it is."""

    @abstractmethod
    def aggregates(self, bucket_start: int) -> list[OrgAggregate]: ...

    @abstractmethod
    def mark_bucket_rolled(self, bucket_start: int, report: dict[str, Any]) -> bool:
        """aggregated -> rolled, once; False if it was rolled already."""


class RunControl(Protocol):
    """The rollup's lease and cursor."""

    @abstractmethod
    def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool: ...

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def cursor(self, name: str) -> int | None: ...

    @abstractmethod
    def advance_cursor(self, name: str, value: int) -> None:
        """Move the cursor forward (never back)."""


class OutboxStore(Protocol):
    """Meter events to send, one row per identifier, each state change conditional."""

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


class LateStore(Protocol):
    """Stragglers by late slot (core/late.py): the slots, their index partitions, the slot's once-only writes."""

    @abstractmethod
    def late_slots(self, since: int) -> list[LateSlot]:
        """The slots with stragglers starting at or after `since`, in order."""

    @abstractmethod
    def late_slot(self, slot: int) -> LateSlot | None: ...

    @abstractmethod
    def late_slot_samples(self, slot: int, shard: int) -> Iterator[StoredSample]:
        """One index partition of a slot: its stragglers (of any buckets)."""

    @abstractmethod
    def unswept_late(self, first_bucket: int, last_bucket: int, since: int) -> list[tuple[int, StoredSample]]:
        """(slot, straggler) of the buckets in [first_bucket, last_bucket], in the slots from `since` not swept."""

    @abstractmethod
    def apply_late(self, slot: int, aggregates: list[OrgAggregate]) -> int:
        """Add each (bucket, org) aggregate into the stored one, once per slot (the slot joins the stored
        aggregate's `late_slots` in the same conditional write); how many were added by this call."""

    @abstractmethod
    def mark_late_swept(self, slot: int, report: dict[str, Any]) -> bool:
        """open -> swept, once; False if it was swept already."""


class BillingStore(OrgStore, SampleStore, QuarantineStore, AggregateStore, RunControl, OutboxStore, LateStore,
                   Protocol):
    """Everything ingest, the rollup and parity read and write: one table set, one adapter."""


class TaskQueue(Protocol):
    """Where the rollup's coordinator puts one task per (bucket, shard) for the workers."""

    @abstractmethod
    def send(self, bodies: list[str]) -> None: ...


class QueueConsumer(TaskQueue, Protocol):
    """What an event source mapping does with a queue (the local poller, the simulation)."""

    @abstractmethod
    def receive(self, limit: int, wait_seconds: int = 0) -> list[tuple[str, str]]:
        """Up to `limit` (receipt, body) pairs, each hidden from other receivers until deleted or timed out."""

    @abstractmethod
    def delete(self, receipts: list[str]) -> None: ...


class GroupedQueue(Protocol):
    """A FIFO queue (the send's): one message of a group in flight at a time, in order; a dedup id seen in
    the last 5 minutes is dropped. The send's coordinator puts one task per customer there."""

    @abstractmethod
    def send_grouped(self, messages: list[GroupedMessage]) -> None: ...


class CatalogStore(Protocol):
    """The published (key, price id) rows the webhook provisions from."""

    @abstractmethod
    def catalog(self) -> list[CatalogEntry]: ...

    @abstractmethod
    def publish_catalog(self, entries: list[CatalogEntry], now: int) -> None:
        """Replace the published catalog with `entries` (never called with an empty list)."""


class AccountStore(CatalogStore, Protocol):
    """The org-side state provisioning and the webhook change, each change a conditional write."""

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def org_by_customer(self, customer: str) -> Org | None: ...

    @abstractmethod
    def claim_org(self, org_id: str, holder: str, now: int, until: int) -> bool:
        """Take the org's provisioning lease unless another holder's lease is unexpired at `now`."""

    @abstractmethod
    def release_org(self, org_id: str, holder: str) -> None:
        """Drop the lease if `holder` still holds it."""

    @abstractmethod
    def attach_subscription(self, org_id: str, sub: Subscription, previous: str | None, now: int) -> bool:
        """Store `sub` unless the org already holds a subscription other than `previous` or `sub`."""

    @abstractmethod
    def detach_subscription(self, org_id: str, subscription_id: str, now: int) -> bool:
        """Forget the attached subscription if it is still `subscription_id`."""

    @abstractmethod
    def record_credit(self, org_id: str, txn_id: str, now: int) -> bool:
        """Record the credit once; False if the org already has one."""

    @abstractmethod
    def set_plan(
        self, org_id: str, plan: Plan, changed_at: int, now: int,
        customer: str | None = None, only_subscription: str | None = None,
    ) -> bool:
        """Change the plan unless a newer change (Stripe `created`) is stored, or, with
        `only_subscription`, unless the org's current subscription is another one."""

    @abstractmethod
    def event_seen(self, event_id: str) -> bool: ...

    @abstractmethod
    def remember_event(self, event_id: str, event_type: str, now: int) -> None: ...


class CellStore(Protocol):
    """What cells report: parity reports and status."""

    @abstractmethod
    def put_parity_report(self, report: ParityReport) -> bool:
        """Store (or replace) the report of (cell, window); False if a newer-signed one is stored."""

    @abstractmethod
    def parity_reports(self, cell_id: str, window_from: int, window_to: int) -> list[ParityReport]:
        """Reports of a cell whose window starts in [window_from, window_to), oldest first."""

    @abstractmethod
    def put_cell_status(self, status: CellStatus) -> bool:
        """Store a cell's status; False if a newer-signed status is stored."""

    @abstractmethod
    def cell_statuses(self) -> list[CellStatus]: ...


class SeamReader(Protocol):
    """The outbox rows and sample cells of the buckets around the cutover's T."""

    def bucket_rows(self, bucket_starts: list[int]) -> list[OutboxRow]: ...

    def org_cells(self, bucket_start: int, org_ids: set[str]) -> dict[tuple[str, int], frozenset[str]]: ...

    def oldest_pending_bucket_end(self) -> int | None: ...

