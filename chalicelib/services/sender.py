"""SEND: pending outbox rows to Stripe, concurrently but never two calls at once per (customer, meter).

Stripe allows one concurrent meter-event call per customer and meter, so rows
are grouped by that pair and each group is sent in order by one worker; groups
run in parallel up to SEND_CONCURRENCY. A 429 is honoured by waiting its
Retry-After; a duplicate-identifier answer means "delivered" and marks the row
sent at once (the seed re-sent such rows until Stripe's 24 h uniqueness
window passed, then billed them twice).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Protocol

from chalicelib.core.meter_events import MeterEvent, Outcome
from chalicelib.core.money import wire
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.send_tasks import backoff_seconds
from chalicelib.observability import logger
from chalicelib.ports import Clock, OrgStore, OutboxStore
from chalicelib.settings import STRIPE_BACKDATE_SECONDS, Settings
from chalicelib.stripe_ports import MeterEventGateway

# Keep clear of Stripe's 35-day edge: a row that would arrive just past it is rejected anyway.
BACKDATE_MARGIN = 3600
MAX_RATE_LIMIT_WAITS = 5  # calls per row and attempt; the waits between them are one fewer
MAX_RETRY_AFTER = 10.0


class SendStore(OrgStore, OutboxStore, Protocol):
    """The roles of the billing store the sender uses (ports.py): the orgs' customers, the outbox's rows."""


@dataclass
class SendPlan:
    groups: dict[tuple[str, str], list[tuple[OutboxRow, str]]]
    no_customer: list[OutboxRow]
    too_old: list[OutboxRow]


def plan_send(rows: list[OutboxRow], orgs: dict[str, Org], now: int) -> SendPlan:
    """Pure: which rows can go, grouped per (customer, meter) in bucket order; which wait; which are too old."""
    plan = SendPlan(groups=defaultdict(list), no_customer=[], too_old=[])
    for row in sorted(rows, key=lambda r: (r.bucket_start, r.id)):
        org = orgs.get(row.org_id)
        if row.bucket_end < now - STRIPE_BACKDATE_SECONDS + BACKDATE_MARGIN:
            plan.too_old.append(row)
        elif org is None or not org.stripe_customer_id:
            plan.no_customer.append(row)
        else:
            plan.groups[(org.stripe_customer_id, row.meter)].append((row, org.stripe_customer_id))
    return plan


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0
    _lock: Lock = field(default_factory=Lock)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def body(self) -> dict[str, Any]:
        keys = ("sent", "duplicate", "waitingNoCustomer", "unbillable", "failed", "retryLater", "rateLimited", "calls")
        return {k: self.counts.get(k, 0) for k in keys} | {"seconds": round(self.seconds, 3)}


class Sender:
    def __init__(
        self,
        store: SendStore,
        gateway: MeterEventGateway,
        clock: Clock,
        run_id: str,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store, self.gateway, self.clock, self.run_id = store, gateway, clock, run_id
        self.deadline, self.sleep, self.jitter = deadline, sleep, jitter
        self.report = SendReport()

    def send_group(self, rows: list[tuple[OutboxRow, str]]) -> None:
        for row, customer in rows:
            if time.monotonic() > self.deadline or not self.send_row(row, customer):
                # Keep bucket order within a (customer, meter): stop this group, the rest go next run.
                return

    def send_row(self, row: OutboxRow, customer: str) -> bool:
        event = MeterEvent(row.meter, row.id, customer, wire(row.value), row.bucket_end)
        log = {
            "run_id": self.run_id,
            "org_id": row.org_id,
            "bucket_start": row.bucket_start,
            "meter": row.meter,
            "identifier": row.id,
        }
        for attempt in range(MAX_RATE_LIMIT_WAITS):
            self.report.add("calls")
            result = self.gateway.send_meter_event(event)
            if result.outcome is not Outcome.RATE_LIMITED:
                break
            self.report.add("rateLimited")
            # Stripe's Retry-After at least, growing and jittered, bounded: the queue retries the rest later.
            wait = backoff_seconds(attempt, result.retry_after, self.jitter(), MAX_RETRY_AFTER)
            if attempt == MAX_RATE_LIMIT_WAITS - 1 or time.monotonic() + wait > self.deadline:
                break  # no wait that leads to no call: the row goes back to the queue (or the next run)
            self.sleep(wait)
        if result.outcome in (Outcome.SENT, Outcome.DUPLICATE):
            key = "sent" if result.outcome is Outcome.SENT else "duplicate"
            if not self.store.transition(row.id, "pending", "sent", self.clock.now(), detail=key):
                self._demoted_meanwhile(row, log)
            self.report.add(key)
            logger.info("meter_event_sent", extra=log | {"outcome": key, "value": str(row.value)})
            return True
        if result.outcome is Outcome.REJECTED:
            self.store.transition(row.id, "pending", "failed", self.clock.now(), detail=result.detail)
            self.report.add("failed")
            logger.error("meter_event_rejected", extra=log | {"error": result.detail})
            return True
        self.report.add("retryLater")
        logger.warning("meter_event_retry_later", extra=log | {"error": result.detail})
        return False

    def _demoted_meanwhile(self, row: OutboxRow, log: dict[str, Any]) -> None:
        """Stripe holds the event but the row left pending after it was read: a cutover rollback moved it to
        shadow during the call. The row must say what Stripe holds (shadow -> sent), or no rollback would ever
        cancel it and the cells' bill of that bucket would double it. Any other state: another worker marked it."""
        if self.store.transition(row.id, "shadow", "sent", self.clock.now(), detail="sent as a rollback demoted it"):
            self.report.add("sentWhileDemoted")
            logger.error("meter_event_sent_while_demoted", extra=log | {
                "value": str(row.value), "action": "run cutover rollback again: it cancels this event"})


def set_aside(store: SendStore, plan: SendPlan, now: int, run_id: str, report: SendReport) -> None:
    """Rows that cannot go: too old for Stripe (pending -> unbillable, for good), or no customer yet (wait)."""
    for row in plan.too_old:
        store.transition(row.id, "pending", "unbillable", now, detail="bucket older than Stripe's 35-day window")
        report.add("unbillable")
        logger.error("meter_event_unbillable", extra={"run_id": run_id, "org_id": row.org_id,
                                                      "bucket_start": row.bucket_start, "identifier": row.id,
                                                      "value": str(row.value)})
    if plan.no_customer:
        report.add("waitingNoCustomer", len(plan.no_customer))
        logger.warning("meter_events_wait_for_customer", extra={
            "run_id": run_id, "rows": len(plan.no_customer),
            "orgs": sorted({r.org_id for r in plan.no_customer})[:50]})


def send_pending(
    store: SendStore,
    gateway: MeterEventGateway,
    settings: Settings,
    clock: Clock,
    run_id: str,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    started = time.monotonic()
    rows = store.outbox_queue("pending", limit=settings.SEND_BATCH_LIMIT)
    orgs = store.get_orgs({r.org_id for r in rows})
    now = clock.now()
    plan = plan_send(rows, orgs, now)
    sender = Sender(store, gateway, clock, run_id, started + settings.SEND_BUDGET_SECONDS, sleep)
    set_aside(store, plan, now, run_id, sender.report)
    with ThreadPoolExecutor(max_workers=settings.SEND_CONCURRENCY) as pool:
        list(pool.map(sender.send_group, plan.groups.values()))
    sender.report.seconds = time.monotonic() - started
    return sender.report
