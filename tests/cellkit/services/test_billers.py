"""The cell's own billers against the project's Stripe emulator (stripe-python's StripeClient), and the switch."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.memory import MemoryStore
from cellkit.adapters.stripe_meters import StripeMeterEvents, make_client
from cellkit.core.usage import OVERAGE_METER, TIER_METERS, OrgRow, meter_identifier
from cellkit.ports import CellStore, SendResult
from cellkit.services.billers import BILLED_THROUGH, Allocator, Billers, BillingConfig, Sender, UsageReporter
from cellkit.services.status import status_body
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import T0, T0_US, Captured

US = 1_000_000
H = 3600


@pytest.fixture
def stripe_meters(emulator: Any) -> StripeMeterEvents:
    for name in (*TIER_METERS.values(), OVERAGE_METER):
        emulator.state.create_meter({"event_name": name, "display_name": name})
    emulator.state.fixed_now = T0 + 3 * H
    return StripeMeterEvents(make_client("sk_test_cell", emulator.url, max_network_retries=0))


def fleet(store: CellStore, clock: ManualClock, log: logging.Logger) -> None:
    store.put_org(OrgRow("leg", "pro", "legacy", "cus_leg"))
    store.put_org(OrgRow("uni", "pro", "unified", "cus_uni"))
    store.put_org(OrgRow("free", "free"))
    store.put_org(OrgRow("nocus", "pro", "unified", None))
    t = Ticker(store, "cell-a", "w1", clock, log)
    t.start("a", "leg", "pro", 4096, 2, T0_US + 600 * US)
    t.resize("a", 8192, 4, T0_US + (H + 60) * US)  # resize one minute into the second hour
    t.stop("a", T0_US + (H + 1800) * US)
    t.start("b", "uni", "pro", 2048, 1, T0_US + (H - 300) * US)  # straddles the hour boundary
    t.stop("b", T0_US + (H + 300) * US)
    t.start("c", "free", "free", 1024, 1, T0_US)
    t.start("d", "nocus", "pro", 1024, 1, T0_US + 100 * US)
    t.stop("d", T0_US + 200 * US)


def billers(store: CellStore, clock: ManualClock, log: logging.Logger, meters: Any, authority: str) -> Billers:
    cfg = BillingConfig("cell-a")
    return Billers(authority, [UsageReporter(store, clock, cfg, log), Allocator(store, clock, cfg, log),
                               Sender(store, clock, cfg, log, meters, sleep=lambda _: None)], log, "cell-a")


def test_cell_authority_bills_settled_hours_to_stripe(
    emulator: Any, stripe_meters: StripeMeterEvents, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    fleet(store, clock, log[0])
    clock.set(T0_US + (2 * H + 599) * US)  # hour 2 ended, not yet settled (600 s)
    b = billers(store, clock, log[0], stripe_meters, "cell")
    assert b.start()
    b.run_once()
    assert store.cursor(BILLED_THROUGH) == T0 + H
    clock.set(T0_US + (2 * H + 600) * US)
    b.run_once()
    assert store.cursor(BILLED_THROUGH) == T0 + 2 * H
    events = {e.identifier: e for e in emulator.state.events.values()}
    assert {i: (e.event_name, e.customer, e.value, e.timestamp) for i, e in events.items()} == {
        meter_identifier("cell-a", "leg", T0, TIER_METERS[4096]): (TIER_METERS[4096], "cus_leg", Decimal(3000), T0 + H),
        meter_identifier("cell-a", "leg", T0 + H, TIER_METERS[4096]): (TIER_METERS[4096], "cus_leg", Decimal(60),
                                                                        T0 + 2 * H),
        meter_identifier("cell-a", "leg", T0 + H, TIER_METERS[8192]): (TIER_METERS[8192], "cus_leg", Decimal(1740),
                                                                        T0 + 2 * H),
        meter_identifier("cell-a", "uni", T0, OVERAGE_METER): (OVERAGE_METER, "cus_uni", Decimal(600), T0 + H),
        meter_identifier("cell-a", "uni", T0 + H, OVERAGE_METER): (OVERAGE_METER, "cus_uni", Decimal(600),
                                                                    T0 + 2 * H),
    }
    # The org without a Stripe customer waits, and says so in the status.
    assert status_body(store, "cell", True, T0 + 3 * H) == {"authority": "cell", "billers_running": True,
                                                "billed_through": T0 + 2 * H, "pending_billable": 1, "spool_depth": 4}
    b.run_once()  # idempotent: nothing new to send, nothing sent twice
    assert len(emulator.state.events) == 5


class Recording:
    def __init__(self, answers: list[SendResult]) -> None:
        self.answers, self.calls = answers, 0

    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult:
        self.calls += 1
        return self.answers.pop(0) if self.answers else SendResult("sent")


def test_sender_outcomes(clock: ManualClock, log: tuple[logging.Logger, Captured]) -> None:
    store = MemoryStore()
    fleet(store, clock, log[0])
    clock.set(T0_US + 3 * H * US)
    Allocator(store, clock, BillingConfig("cell-a"), log[0]).run_once()
    assert store.count_billable("pending") == 6
    stripe = Recording([SendResult("duplicate"), SendResult("rejected", "bad"), SendResult("retry")])
    sender = Sender(store, clock, BillingConfig("cell-a"), log[0], stripe, sleep=lambda _: None)
    assert sender.run_once() == 1  # duplicate counts as delivered; the retry stops the run
    assert store.count_billable("sent") == 1 and store.count_billable("failed") == 1
    (rejected,) = log[1].events("meter_event_rejected")
    assert rejected.alarm is True  # type: ignore[attr-defined]
    assert sender.run_once() == 3 and store.count_billable("pending") == 1  # the customer-less org waits


def test_stripe_duplicate_identifier_means_delivered(emulator: Any, stripe_meters: StripeMeterEvents) -> None:
    first = stripe_meters.send(OVERAGE_METER, "cell:x:1", "cus_1", "1.000000", T0 + 2 * H)
    again = stripe_meters.send(OVERAGE_METER, "cell:x:1", "cus_1", "1.000000", T0 + 2 * H)
    assert first.outcome == "sent"
    assert again.outcome in ("sent", "duplicate")  # an idempotent replay, or Stripe's duplicate rejection
    assert len(emulator.state.events) == 1
    assert stripe_meters.send("no_such_meter", "cell:x:2", "cus_1", "1", T0 + 2 * H).outcome == "rejected"


def test_edge_authority_stops_each_biller_with_one_line_and_bills_nothing(
    clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    fleet(store, clock, log[0])
    clock.set(T0_US + 5 * H * US)
    stripe = Recording([])
    b = billers(store, clock, log[0], stripe, "edge")
    assert not b.start()
    assert b.run_once() == {"sender": 0}  # the sender only drains what was settled: nothing here
    lines = log[1].events("biller_stopped")
    assert sorted(r.biller for r in lines) == ["allocator", "usage_reporter"]  # type: ignore[attr-defined]
    assert all("PRO_BILLING_AUTHORITY=edge" in r.reason for r in lines)  # type: ignore[attr-defined]
    assert [r.biller for r in log[1].events("biller_draining")] == ["sender"]  # type: ignore[attr-defined]
    assert stripe.calls == 0 and store.count_billable("pending") == 0 and store.cursor(BILLED_THROUGH) is None
    assert not log[1].events("billable_unsent")
    # Any other value keeps the cell billing.
    on = billers(store, clock, log[0], stripe, "cell")
    assert on.start() and on.run_once()["allocator"] == 4 and stripe.calls == 5


class Died(BaseException):
    """The cell process ended: not an Exception, so nothing in the biller catches it."""


class DiesAt:
    """The store, except that the process dies at its k-th call: before the call, or right after it."""

    def __init__(self, store: CellStore, k: int, after: bool) -> None:
        self._store, self._k, self._after, self.calls = store, k, after, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._k and not self._after:
                raise Died(name)
            out = attr(*args, **kwargs)
            if self.calls == self._k:
                raise Died(name)
            return out

        return call


def allocated(store: CellStore) -> tuple[list[str], int | None]:
    return sorted(map(repr, store.billable("pending", 10_000))), store.cursor(BILLED_THROUGH)


def settled_fleet(clock: ManualClock, log: logging.Logger) -> MemoryStore:
    store = MemoryStore()
    fleet(store, clock, log)
    clock.set(T0_US + (3 * H + 600) * US)  # three hours settled
    return store


def test_a_cell_killed_at_any_store_call_of_the_allocator_allocates_every_hour_once(
    clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    cfg = BillingConfig("cell-a")
    whole = settled_fleet(clock, log[0])
    counted = DiesAt(whole, 0, False)
    assert Allocator(counted, clock, cfg, log[0]).run_once() == 3  # type: ignore[arg-type]
    want = allocated(whole)
    assert want[1] == T0 + 3 * H and len(want[0]) == 6
    for k in range(1, counted.calls + 1):
        for after in (False, True):
            store = settled_fleet(clock, log[0])
            with pytest.raises(Died):
                Allocator(DiesAt(store, k, after), clock, cfg, log[0]).run_once()  # type: ignore[arg-type]
            Allocator(store, clock, cfg, log[0]).run_once()  # the cell restarted
            assert allocated(store) == want, (k, after)


def test_edge_authority_strands_no_settled_row_and_alarms_while_any_is_unsent(
    clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    """Issue 18, item 8: rows the cell settled before the switch (hours before T) were never sent, silently."""
    store = MemoryStore()
    fleet(store, clock, log[0])
    clock.set(T0_US + (2 * H + 600) * US)  # hours 0 and 1 settled by the cell, then the cutover
    cell_mode = billers(store, clock, log[0], Recording([SendResult("retry")]), "cell")
    assert cell_mode.start() and cell_mode.run_once()["allocator"] == 2
    pending = store.count_billable("pending")
    assert pending == 6 and store.cursor(BILLED_THROUGH) == T0 + 2 * H
    first = store.billable("pending", 1)[0]
    store.mark_billable(first.identifier, "failed", "No such customer", T0)  # Stripe refused one earlier
    assert status_body(store, "edge", False, T0 + 3 * H)["pending_billable"] == 6  # failed counts: not sent

    clock.set(T0_US + 5 * H * US)
    stripe = Recording([SendResult("retry")])  # Stripe unwell at the first run after the switch
    edge_mode = billers(store, clock, log[0], stripe, "edge")
    assert not edge_mode.start()
    assert edge_mode.run_once() == {"sender": 0}
    (alarm,) = log[1].events("billable_unsent")
    assert (alarm.alarm, alarm.pending, alarm.failed, alarm.levelno) == (True, 5, 1, logging.ERROR)  # type: ignore[attr-defined]
    edge_mode.run_once()  # Stripe is back: the settled rows go out, hours before T only
    assert store.count_billable("pending") == 1 and store.count_billable("sent") == 4  # one has no customer
    assert store.cursor(BILLED_THROUGH) == T0 + 2 * H  # nothing settled after the switch
    assert {b.bucket_start for b in store.billable("sent", 10)} == {T0, T0 + H}
    assert len(log[1].events("billable_unsent")) == 2  # the failed row (and the row without a customer) remain
    assert status_body(store, "edge", False, T0 + 5 * H)["pending_billable"] == 2
