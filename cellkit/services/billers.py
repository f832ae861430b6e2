"""The cell's own billers, the pre-cutover path: usage reporter, allocator, sender.

- reporter: hourly usage per pro org and meter from ``sandbox_scale_events``
  (clipped per hour), upserted into ``usage_hours`` for every closed hour not
  yet settled; it may run any number of times.
- allocator: once an hour is ``SETTLE_SECONDS`` past its end, recomputes it one
  last time, writes one outbox row per (org, hour, meter) with the cell's own
  Stripe identifier, and moves ``billed_through`` past it (outbox first, then
  the cursor: a crash between them replays into the same identifiers).
- sender: pending rows to Stripe meter events; a duplicate-identifier answer
  means delivered; rows of orgs without a Stripe customer wait.

``PRO_BILLING_AUTHORITY=edge`` stops the reporter and the allocator, each with
one log line: no hour is settled any more. The sender keeps delivering the
outbox rows already settled (hours before ``billed_through``, the cell's to
bill: stopping it stranded them silently), and every run while any row is
unsent (pending, or failed by Stripe) logs ``billable_unsent`` as an alarm.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from cellkit.core.timeutil import MICROS
from cellkit.core.usage import hour_usage, meter_identifier, wire_value
from cellkit.ports import Billable, CellStore, Clock, MeterEvents

BILLED_THROUGH = "billed_through"
MAX_HOURS_PER_RUN = 48
MAX_RATE_LIMIT_WAITS = 5


@dataclass(frozen=True)
class BillingConfig:
    cell_id: str
    bucket_seconds: int = 3600
    settle_seconds: int = 600
    send_limit: int = 500


def billed_through(store: CellStore, now_s: int, width: int) -> int:
    """Every bucket before it is settled. Before the first settlement: the hour of the first scale event,
    or, for a cell that has none, the current hour (an idle cell owes nothing before it)."""
    value = store.cursor(BILLED_THROUGH)
    if value is not None:
        return value
    first = store.first_scale_event_us()
    start = (first // MICROS) if first is not None else now_s
    return start - start % width


class Biller(ABC):
    name = "biller"

    def __init__(self, store: CellStore, clock: Clock, cfg: BillingConfig, log: logging.Logger) -> None:
        self.store, self.clock, self.cfg, self.log = store, clock, cfg, log
        self.stop = threading.Event()  # set at shutdown (Billers.bind_stop): no new Stripe call starts

    def _now_s(self) -> int:
        return self.clock.now_us() // MICROS

    def billed_through(self) -> int:
        return billed_through(self.store, self._now_s(), self.cfg.bucket_seconds)

    def _hour(self, bucket: int) -> list[Billable]:
        width = self.cfg.bucket_seconds
        events = self.store.scale_events(bucket * MICROS, (bucket + width) * MICROS)
        orgs = self.store.orgs(sorted({e.org_id for e in events}))
        rows, unpriced = hour_usage(events, orgs, bucket, width, self.clock.now_us())
        self.store.put_usage(rows)
        for org_id, memory_mb in unpriced:
            self.log.warning("usage_unpriced", extra={"cell_id": self.cfg.cell_id, "org_id": org_id,
                                                      "memory_mb": memory_mb, "bucket_start": bucket})
        return [Billable(meter_identifier(self.cfg.cell_id, r.org_id, r.bucket_start, r.meter), r.org_id,
                         r.bucket_start, r.meter, r.value) for r in rows if r.value > 0]

    @abstractmethod
    def run_once(self) -> int:
        """One pass; returns how many hours (or rows) it handled."""


class UsageReporter(Biller):
    name = "usage_reporter"

    def run_once(self) -> int:
        width, now = self.cfg.bucket_seconds, self._now_s()
        bucket, done = self.billed_through(), 0
        while bucket + width <= now and done < MAX_HOURS_PER_RUN:
            self._hour(bucket)
            bucket, done = bucket + width, done + 1
        return done


class Allocator(Biller):
    name = "allocator"

    def run_once(self) -> int:
        width, now = self.cfg.bucket_seconds, self._now_s()
        bucket, settled = self.billed_through(), 0
        while bucket + width + self.cfg.settle_seconds <= now and settled < MAX_HOURS_PER_RUN:
            rows = self._hour(bucket)
            new = self.store.put_billable(rows)
            self.store.set_cursor(BILLED_THROUGH, bucket + width)
            self.log.info("hour_settled", extra={"cell_id": self.cfg.cell_id, "bucket_start": bucket,
                                                 "rows": len(rows), "new_rows": new})
            bucket, settled = bucket + width, settled + 1
        return settled


class Sender(Biller):
    name = "sender"

    def __init__(
        self, store: CellStore, clock: Clock, cfg: BillingConfig, log: logging.Logger, stripe: MeterEvents,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(store, clock, cfg, log)
        self.stripe, self.sleep = stripe, sleep

    def run_once(self) -> int:
        rows = self.store.billable("pending", self.cfg.send_limit)
        orgs = self.store.orgs(sorted({r.org_id for r in rows}))
        sent = 0
        for row in rows:
            if self.stop.is_set():
                break
            org = orgs.get(row.org_id)
            if org is None or not org.stripe_customer_id:
                continue  # waits for a customer; counted in pending_billable
            outcome = self._send(row, org.stripe_customer_id)
            if outcome == "retry":
                break  # Stripe is unwell: the rest wait for the next run, in order
            sent += outcome in ("sent", "duplicate")
        return sent

    def _send(self, row: Billable, customer: str) -> str:
        ids = {"cell_id": self.cfg.cell_id, "org_id": row.org_id, "bucket_start": row.bucket_start,
               "meter": row.meter, "identifier": row.identifier}
        for _ in range(MAX_RATE_LIMIT_WAITS):
            result = self.stripe.send(row.meter, row.identifier, customer, wire_value(row.value),
                                      row.bucket_start + self.cfg.bucket_seconds)
            if result.outcome != "rate_limited":
                break
            self.sleep(min(result.retry_after or 1.0, 10.0))
            if self.stop.is_set():
                return "retry"  # shutting down: the row stays pending, the next run sends it
        else:
            return "retry"
        if result.outcome in ("sent", "duplicate"):
            self.store.mark_billable(row.identifier, "sent", result.outcome, self._now_s())
            self.log.info("meter_event_sent", extra=ids | {"outcome": result.outcome, "value": wire_value(row.value)})
        elif result.outcome == "rejected":
            self.store.mark_billable(row.identifier, "failed", result.detail, self._now_s())
            self.log.error("meter_event_rejected", extra=ids | {"alarm": True, "error": result.detail})
        else:
            self.log.warning("meter_event_retry_later", extra=ids | {"error": result.detail})
        return result.outcome


class Billers:
    """The three billers under the authority switch."""

    def __init__(self, authority: str, billers: list[Biller], log: logging.Logger, cell_id: str) -> None:
        self.authority, self.billers, self.log, self.cell_id = authority, billers, log, cell_id
        self.running = False

    def bind_stop(self, stop: threading.Event, sleep: Callable[[float], None]) -> None:
        """Shutdown reaches every biller: loops end between rows, Stripe's rate-limit wait ends at once."""
        for biller in self.billers:
            biller.stop = stop
            if isinstance(biller, Sender):
                biller.sleep = sleep

    def start(self) -> bool:
        if self.authority == "edge":
            for biller in self.billers:
                if isinstance(biller, Sender):
                    self.log.info("biller_draining", extra={
                        "cell_id": self.cell_id, "biller": biller.name,
                        "reason": "PRO_BILLING_AUTHORITY=edge: sends only the rows already settled (hours before "
                                  "billed_through, the cell's to bill); settles no more"})
                    continue
                self.log.info("biller_stopped", extra={
                    "cell_id": self.cell_id, "biller": biller.name,
                    "reason": "PRO_BILLING_AUTHORITY=edge: the edge bills pro usage; this cell does not"})
            self.running = False
        else:
            for biller in self.billers:
                self.log.info("biller_started", extra={"cell_id": self.cell_id, "biller": biller.name})
            self.running = True
        return self.running

    def run_once(self) -> dict[str, int]:
        if self.authority == "edge":
            # Only the sender, and only while rows remain: what the cell settled before the cutover.
            out = self._run([b for b in self.billers if isinstance(b, Sender)])
            self._report_unsent()
            return out
        return self._run(self.billers) if self.running else {}

    def _report_unsent(self) -> None:
        store = next((b.store for b in self.billers if isinstance(b, Sender)), None)
        if store is None:
            return
        pending, failed = store.count_billable("pending"), store.count_billable("failed")
        if pending or failed:
            self.log.error("billable_unsent", extra={
                "alarm": True, "cell_id": self.cell_id, "pending": pending, "failed": failed,
                "detail": "settled hours this cell still owes Stripe (pending: waiting for Stripe or a customer; "
                          "failed: refused by Stripe, see meter_event_rejected); counted in pending_billable"})

    def _run(self, billers: list[Biller]) -> dict[str, int]:
        out: dict[str, int] = {}
        for biller in billers:
            if biller.stop.is_set():
                break
            try:
                out[biller.name] = biller.run_once()
            except Exception:  # one biller's failure must not stop the others; the next run retries
                self.log.exception("biller_failed", extra={"cell_id": self.cell_id, "biller": biller.name})
        return out
