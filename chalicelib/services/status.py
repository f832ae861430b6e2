"""The operator's status (CONTRACT 11): gather what the stage holds and let `core.status` shape it.

One read-only pass: cell statuses and parity reports, the seam around BILL_FROM once armed, the
rollup's cursor, the outbox's queues, the quarantine, Stripe's meter error reports and the free tier.
Counts stop at COUNT_CAP so the page stays cheap on a large backlog (`capped` says when they did).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Protocol

from chalicelib.core import status as view
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.cutover import verify
from chalicelib.core.cutover.preflight import SOAK_SECONDS, soak_window
from chalicelib.operator_ports import FreeStatus, MeterErrorStore
from chalicelib.ports import CellStore, OutboxStore, QuarantineStore, RunControl, SeamReader
from chalicelib.services.rollup import CURSOR
from chalicelib.settings import Settings

COUNT_CAP = 10_000


class StatusRecords(RunControl, OutboxStore, QuarantineStore, Protocol):
    """The billing store's roles the page reads: the rollup's cursor, the outbox's queues, the quarantine."""


class StatusDeps(Protocol):
    """What the operator's status asks of the container: read-only views."""

    settings: Settings

    @property
    def store(self) -> StatusRecords: ...

    def now(self) -> int: ...

    def cells(self) -> CellStore: ...

    def seam(self) -> SeamReader: ...


def parity(svc: StatusDeps, cells: list[CellStatus], now: int, soak_seconds: int) -> dict[str, Any]:
    s = svc.settings
    start, end = soak_window(now, s.BUCKET_SECONDS, s.GRACE_SECONDS, soak_seconds)
    buckets = view.grid_window(start, end, s.BUCKET_SECONDS)
    first = buckets[0] if buckets else end
    # A report may span an hour of buckets: read from a day before the grid's first bucket.
    reports = {c.cell_id: svc.cells().parity_reports(c.cell_id, first - 86400, end) for c in cells}
    grid = view.parity_grid([c.cell_id for c in cells], reports, buckets, s.BUCKET_SECONDS)
    return {"soak": {"from": start, "to": end, "buckets": buckets}, "parity": [p.body() for p in grid]}


def seam(svc: StatusDeps, cells: list[CellStatus], now: int) -> list[dict[str, Any]]:
    """Who billed each bucket around BILL_FROM, once the edge is live: empty in shadow."""
    s = svc.settings
    if s.SHADOW or not s.BILL_FROM or not cells:
        return []
    bucket = s.BUCKET_SECONDS
    last_closed = (now - s.GRACE_SECONDS) // bucket * bucket - bucket
    edges = [c.billed_through for c in cells] + [s.BILL_FROM]
    lo, hi = min(edges) - 2 * bucket, max(edges) + 2 * bucket
    around = [b for b in range(lo - lo % bucket, hi, bucket) if b <= last_closed]
    sent = [r for r in svc.seam().bucket_rows(around) if r.state in ("sent", "cancelled")]
    verdicts = verify.seam(cells, s.BILL_FROM, bucket, sent, last_closed=last_closed)
    return [v.body() for v in verdicts]


def outbox(svc: StatusDeps, now: int) -> dict[str, Any]:
    pending = len(svc.store.outbox_queue("pending", limit=COUNT_CAP))
    failed = len(svc.store.outbox_queue("failed", limit=COUNT_CAP))
    oldest = svc.seam().oldest_pending_bucket_end()
    return view.outbox_view(pending, failed, oldest, now, capped=max(pending, failed) >= COUNT_CAP)


def status(svc: StatusDeps, reports: MeterErrorStore, free: FreeStatus,
           soak_seconds: int = SOAK_SECONDS) -> dict[str, Any]:
    s = svc.settings
    now = svc.now()
    cells = sorted(svc.cells().cell_statuses(), key=lambda c: c.cell_id)
    quarantined = sum(1 for _ in islice(svc.store.quarantine(), COUNT_CAP))
    return {
        "stage": s.WORKER_ENV, "shadow": s.SHADOW, "bill_from": s.BILL_FROM, "bucket_seconds": s.BUCKET_SECONDS,
        "grace_seconds": s.GRACE_SECONDS, "as_of": now,
        "cells": [view.cell_view(c, now) for c in cells],
        **parity(svc, cells, now, soak_seconds),
        "seam": seam(svc, cells, now),
        "rollup": view.rollup_view(svc.store.cursor(CURSOR), s.BUCKET_SECONDS, now),
        "outbox": outbox(svc, now),
        "quarantine": quarantined,
        "meter_errors": [r.body() for r in reports.meter_error_reports(limit=20)],
        "free": {"halted_orgs": free.halted_orgs(),
                 "lowest_balances": [{"org_id": o, "balance": str(b)} for o, b in free.lowest_balances()]},
    }
