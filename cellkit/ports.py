"""The ports: every dependency the services have, as typed Protocols (and the records they carry).

The services see only these; adapters (SQLite, PostgreSQL, memory, HTTP,
Stripe) implement them, and tests inject in-memory or in-process ones instead
of patching anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

from cellkit.core.ticker import Sandbox
from cellkit.core.usage import OrgRow, ScaleEvent, UsageRow

# voided: an operator decided the row is never to be billed (python -m cellkit billable void, with a reason).
BillableState = Literal["pending", "sent", "failed", "voided"]


@dataclass(frozen=True)
class SpoolItem:
    """One envelope waiting for the edge's 202: its id and its exact JSON text."""

    id: str
    body: str


@dataclass(frozen=True)
class AsideItem:
    id: str
    body: str
    reason: str
    at: int


@dataclass(frozen=True)
class Billable:
    """One meter event of the cell's own billing (the outbox row); ``identifier`` is its Stripe identifier."""

    identifier: str
    org_id: str
    bucket_start: int
    meter: str
    value: Decimal
    state: BillableState = "pending"
    detail: str = ""


class Tx(Protocol):
    """A unit of work: everything done through it commits together or not at all."""

    def spool_put(self, items: Sequence[SpoolItem]) -> None: ...

    # A sandbox row changes only by compare-and-set: never a blind whole-row write, which under READ COMMITTED
    # (PostgreSQL) would undo a tick committed between the read and the write (an interval billed twice or never).
    def sandbox_for_update(self, sandbox_id: str) -> Sandbox | None:
        """The row, locked until the transaction ends (PostgreSQL: SELECT ... FOR UPDATE; SQLite's
        BEGIN IMMEDIATE already holds the database's write lock)."""
        ...

    def insert_sandbox(self, sandbox: Sandbox) -> bool:
        """Only if no row has its id; False otherwise (another start won)."""
        ...

    def change_sandbox(self, expected: Sandbox, new: Sandbox) -> bool:
        """Compare-and-set of the whole row: written only if the row still equals ``expected`` in every column."""
        ...

    def open_scale_event(self, event: ScaleEvent) -> bool:
        """False if an event with its id exists already (the caller's transaction must not commit then)."""
        ...

    def close_scale_events(self, sandbox_id: str, ended_us: int) -> None:
        """End the sandbox's open events at ``ended_us``; one that would end where it started is deleted
        (it bills nothing, and a new event at that moment reuses its id)."""
        ...


class StoreUnavailable(Exception):
    """The database cannot be reached (a lost connection, a server restarting). Nothing of the failed
    transaction was written, or, when the connection broke during its COMMIT, possibly all of it: retrying is
    safe for the kit's writes (compare-and-set cursors, envelope ids the edge deduplicates)."""


class CellStore(Protocol):
    def transaction(self) -> AbstractContextManager[Tx]: ...

    # spool
    def spool_put(self, items: Sequence[SpoolItem]) -> None: ...
    def spool_head(self, limit: int) -> list[SpoolItem]: ...
    def spool_delete(self, ids: Sequence[str]) -> None: ...
    def spool_set_aside(self, ids: Sequence[str], reason: str, at: int) -> None: ...
    def spool_depth(self) -> int: ...
    def aside(self) -> list[AsideItem]: ...
    def aside_replay(self, ids: Sequence[str]) -> int:
        """Move set-aside envelopes back to the spool's tail (one transaction); returns how many moved."""
        ...
    def aside_discard(self, ids: Sequence[str]) -> int:
        """Delete set-aside envelopes for good; returns how many were deleted."""
        ...

    # the forwarder's lease: one sender per spool, however many processes share it
    def lease_acquire(self, name: str, holder: str, now_us: int, ttl_us: int, from_holder: str | None = None) -> bool:
        """Take or renew ``name`` for ``holder`` until ``now_us + ttl_us``: only when it is free, expired
        (``until <= now_us``), already ``holder``'s, or ``from_holder``'s (taken from a holder known dead).
        Atomic against any other process on the store."""
        ...
    def lease_holder(self, name: str) -> str | None: ...
    def lease_release(self, name: str, holder: str) -> None: ...

    # sandboxes and scale events
    def sandbox(self, sandbox_id: str) -> Sandbox | None: ...
    def running_sandboxes(self, worker_id: str | None = None) -> list[Sandbox]: ...
    def scale_events(self, from_us: int, to_us: int) -> list[ScaleEvent]: ...
    def first_scale_event_us(self) -> int | None: ...

    # orgs
    def put_org(self, org: OrgRow) -> None: ...
    def orgs(self, org_ids: Sequence[str] | None = None) -> dict[str, OrgRow]: ...

    # the cell's own billing
    def put_usage(self, rows: Sequence[UsageRow]) -> None: ...
    def usage(self, from_bucket: int, to_bucket: int) -> list[UsageRow]: ...
    def put_billable(self, rows: Sequence[Billable]) -> int: ...
    def billable(self, state: BillableState, limit: int) -> list[Billable]: ...
    def mark_billable(self, identifier: str, state: BillableState, detail: str, at: int) -> None: ...
    def count_billable(self, state: BillableState) -> int: ...
    def transition_billable(self, identifier: str, from_state: BillableState, to_state: BillableState, detail: str,
                            at: int) -> bool:
        """Compare-and-set of one row's state (an operator's retry or void never overwrites the sender's)."""
        ...
    def cursor(self, name: str) -> int | None: ...
    def set_cursor(self, name: str, value: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, DNS, timeout. Always retryable."""


class MalformedResponse(TransportError):
    """An answer that is not HTTP (a garbage status line, a body cut short): retryable, and worth an alarm."""


class HttpTransport(Protocol):
    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse: ...


class EdgeApi(Protocol):
    """The edge, as the cell's services talk to it: every request signed (CONTRACT section 1) and sent with
    the cell's id. ``cellkit/adapters/http.py`` implements it over an ``HttpTransport``."""

    cell_id: str
    timeout: float  # seconds, per socket operation of one request

    def send_body(self, method: str, path: str, body: bytes,
                  extra: Mapping[str, str] | None = None) -> HttpResponse: ...

    def get(self, path: str, params: list[tuple[str, str]]) -> HttpResponse: ...

    def put_json(self, path: str, payload: Any) -> HttpResponse: ...

    def post_json(self, path: str, payload: Any) -> HttpResponse: ...


class Clock(Protocol):
    def now_us(self) -> int: ...


class Sleeper(Protocol):
    def __call__(self, seconds: float) -> None: ...




SendOutcome = Literal["sent", "duplicate", "retry", "rate_limited", "rejected"]


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    detail: str = ""
    retry_after: float | None = None


class MeterEvents(Protocol):
    """Stripe's meter-event API as the sender sees it."""

    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult: ...


class HaltStore(Protocol):
    """The org halts of the free tier (CONTRACT section 10), beside the cell's tables (one transaction)."""

    def org_halted_locked(self, org_id: str) -> bool:
        """Inside the caller's transaction: lock the org's halt row (creating it) and say if it is halted.
        A create takes this lock too, so a create and a halt of one org are serialised."""
        ...

    def set_org_halt(self, org_id: str, halted: bool, at_us: int, reason: str) -> bool:
        """Set the org's halt (its own transaction, under the same lock); True if it changed."""
        ...

    def halted_orgs(self) -> dict[str, tuple[int, str]]:
        """org id -> (halted at, microseconds; reason)."""
        ...

    def org_sandboxes(self, org_id: str | None, status: str) -> list[Sandbox]:
        """Sandboxes in `status` (of one org, or of every org with None)."""
        ...
