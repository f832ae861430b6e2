"""The send fanned out per customer, on both stores: the in-memory adapters and moto (DynamoDB + SQS FIFO).

The enumeration kills a worker before and after each of its store and Stripe calls on both, then lets
the message come back; Stripe must end with each row's value once, every row sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.core.meter_events import MeterEvent, Outcome, SendResult
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.ports import BillingStore, QueueConsumer, StoreUnavailable
from chalicelib.services.send_fanout import enqueue_sends, on_send_messages
from chalicelib.settings import Settings, load_settings
from tests.conftest import BOTO
from tests.simulation.engine import SimStripe, Steps, crash_after, crash_before

T0 = 1_795_564_800
H = 3600
NOW = T0 + 5 * H
_queues = itertools.count()


def settings(**extra: str) -> Settings:
    return load_settings({"SHADOW": "false", "SEND_WORKER_THREADS": "1", "SEND_TASK_ROWS": "2",
                          "EVENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x"} | extra)


class Both:
    """One store and one FIFO queue: in memory, or moto's DynamoDB and SQS."""

    def __init__(self, store: BillingStore, make_queue: Callable[[], Any]) -> None:
        self.store, self.make_queue = store, make_queue
        self.queue_time = [NOW]  # the in-memory queue's clock (moto's runs on its own, visibility 0)


@pytest.fixture(params=["memory", "moto"])
def both(request: pytest.FixtureRequest) -> Iterator[Both]:
    if request.param == "memory":
        both = Both(MemoryStore(), lambda: MemoryQueue(lambda: both.queue_time[0], visibility=30))
        yield both
        return
    store = request.getfixturevalue("store")
    sqs = BOTO.client("sqs")
    urls: list[str] = []

    def make() -> SqsQueue:
        url = sqs.create_queue(QueueName=f"send-{next(_queues)}.fifo",
                               Attributes={"FifoQueue": "true", "VisibilityTimeout": "0"})["QueueUrl"]
        urls.append(url)
        return SqsQueue(sqs, url)

    yield Both(store, make)
    for url in urls:
        sqs.delete_queue(QueueUrl=url)


def rows_for(store: BillingStore, prefix: str, customers: int = 2, hours: int = 2) -> list[OutboxRow]:
    """Pending rows: per org, `hours` buckets of two meters; values distinct so a double shows."""
    rows = []
    for c in range(customers):
        org = f"{prefix}o{c}"
        store.put_org(Org(org, plan="pro", stripe_customer_id=f"cus_{prefix}{c}"))
        for h in range(hours):
            for m, meter in enumerate(("m1gb", "m4gb")):
                b = T0 + h * H
                rows.append(OutboxRow(f"{org}:{b}:{meter}", org, b, b + H, meter,
                                      Decimal(f"{c + 1}.{h}{m}0001"), "first", "pending", created_at=NOW))
    store.create_outbox_rows(rows)
    return rows


def drain(both: Both, queue: QueueConsumer, stripe: Any, steps: Steps | None = None) -> int:
    """Workers until the queue is empty or one is killed; how many invocations."""
    n = 0
    while batch := queue.receive(10):
        n += 1
        store, gateway = both.store, stripe
        if steps is not None:
            store, gateway = steps.wrap(store), steps.wrap(gateway)
        try:
            done = on_send_messages(store, gateway, settings(), FixedClock(NOW), batch, "t", sleep=lambda _: None)
        except Crash:
            return n
        queue.delete([r for r, _ in batch if r not in done.failed])
    return n


def billed(stripe: SimStripe) -> dict[str, Decimal]:
    return {e.identifier: Decimal(e.value) for e in stripe.events}


def test_the_coordinator_puts_one_task_per_customer_and_chunk_in_bucket_order(both: Both) -> None:
    rows = rows_for(both.store, "c")
    queue = both.make_queue()
    out = enqueue_sends(both.store, queue, settings(), NOW, "run")
    assert (out["tasks"], out["rows"], out["customers"]) == (4, 8, 2)
    again = enqueue_sends(both.store, queue, settings(), NOW, "run")
    assert again["tasks"] == 4
    got = [b for _, b in queue.receive(10)]
    assert len(got) == 4, "the repeat within the dedup window was dropped by the queue"
    stripe = SimStripe(lambda: NOW)
    queue2 = both.make_queue()
    enqueue_sends(both.store, queue2, settings(), NOW, "run")
    drain(both, queue2, stripe)
    assert billed(stripe) == {r.id: r.value for r in rows}
    per_customer_meter = [(e.customer, e.event_name, e.timestamp) for e in stripe.events]
    for key in {(c, m) for c, m, _ in per_customer_meter}:
        stamps = [t for c, m, t in per_customer_meter if (c, m) == key]
        assert stamps == sorted(stamps), "each customer's meter in bucket order"
    assert both.store.outbox_queue("pending") == []


@pytest.mark.parametrize("crash", [crash_before, crash_after], ids=["before", "after"])
def test_a_worker_killed_at_every_call_changes_nothing_billed(both: Both, crash: Any) -> None:
    probe = Steps()
    prefix = "p"
    rows_for(both.store, prefix, customers=1)
    queue = both.make_queue()
    enqueue_sends(both.store, queue, settings(), NOW, "run")
    drain(both, queue, SimStripe(lambda: NOW), probe)
    assert probe.count == 12, probe.names  # 4 rows: read, send, mark
    # On moto the first row's read, send and mark (the rest repeat them): what moto adds is DynamoDB's
    # conditional writes and SQS FIFO, and each kill there costs ~0.2 s; memory enumerates every call.
    last = probe.count if isinstance(both.store, MemoryStore) else 3
    for k in range(1, last + 1):
        prefix = f"k{k}"
        rows = rows_for(both.store, prefix, customers=1)
        queue, stripe = both.make_queue(), SimStripe(lambda: NOW)
        enqueue_sends(both.store, queue, settings(), NOW, "run")
        drain(both, queue, stripe, Steps(k, crash))  # killed at call k: nothing deleted
        both.queue_time[0] += 301  # the killed worker's message shows again; the dedup window passes
        drain(both, queue, stripe)  # the message again, to a worker that lives
        drain(both, queue, stripe)
        enqueue_sends(both.store, queue, settings(), NOW, "run")
        drain(both, queue, stripe)
        assert stripe.twice_accepted() == [], f"step {k}"
        assert billed(stripe) == {r.id: r.value for r in rows}, f"step {k}"
        assert all(both.store.get_outbox_row(r.id).state == "sent" for r in rows), f"step {k}"  # type: ignore[union-attr]


def test_a_row_moved_out_of_pending_after_it_was_enqueued_is_not_sent(both: Both) -> None:
    rows = rows_for(both.store, "d", customers=1, hours=1)
    queue = both.make_queue()
    enqueue_sends(both.store, queue, settings(), NOW, "run")
    both.store.transition(rows[0].id, "pending", "shadow", NOW, detail="cutover rollback")
    stripe = SimStripe(lambda: NOW)
    drain(both, queue, stripe)
    assert set(billed(stripe)) == {rows[1].id}


class Throttled(SimStripe):
    """Answers 429 (Retry-After 2 s) `n` times, then takes events."""

    def __init__(self, n: int) -> None:
        super().__init__(lambda: NOW)
        self.n = n

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        if self.n > 0:
            self.n -= 1
            self.calls += 1
            return SendResult(Outcome.RATE_LIMITED, "429", retry_after=2.0)
        return super().send_meter_event(event)


@pytest.mark.parametrize("at,when", [(1, "before"), (2, "before"), (3, "before"), (3, "after")],
                         ids=["before-read", "before-send", "before-mark", "after-mark"])
def test_a_rollback_demoting_the_row_at_any_step_of_its_send_leaves_the_row_saying_what_stripe_holds(
    both: Both, at: int, when: str
) -> None:
    rows = rows_for(both.store, f"rb{at}{when}", customers=1, hours=1)  # one task: row 0's read, send, mark
    queue = both.make_queue()
    enqueue_sends(both.store, queue, settings(), NOW, "run")
    stripe = SimStripe(lambda: NOW)

    def demote(name: str, run: Callable[[], Any]) -> Any:
        done = run() if when == "after" else None
        both.store.transition(rows[0].id, "pending", "shadow", NOW, detail="cutover rollback")
        return done if when == "after" else run()

    drain(both, queue, stripe, Steps(at, demote))
    state = both.store.get_outbox_row(rows[0].id).state  # type: ignore[union-attr]
    held = rows[0].id in billed(stripe)
    assert (held, state) == ((False, "shadow") if at == 1 else (True, "sent")), "sent iff Stripe holds it"
    assert billed(stripe).get(rows[1].id) == rows[1].value, "the task's other row went as ever"


def test_429s_are_waited_out_at_least_retry_after_growing_and_bounded() -> None:
    store = MemoryStore()
    rows = rows_for(store, "r", customers=1, hours=1)
    queue = MemoryQueue(lambda: NOW)
    enqueue_sends(store, queue, settings(SEND_TASK_ROWS="50"), NOW, "run")
    waits: list[float] = []
    stripe = Throttled(3)
    batch = queue.receive(10)
    done = on_send_messages(store, stripe, settings(), FixedClock(NOW), batch, "t", sleep=waits.append,
                            jitter=lambda: 1.0)
    assert waits == [2.0, 4.0, 8.0] and done.failed == [] and set(billed(stripe)) == {r.id for r in rows}
    assert done.counts["rateLimited"] == 3

    more = rows_for(store, "s", customers=1, hours=1)
    enqueue_sends(store, queue, settings(SEND_TASK_ROWS="50"), NOW, "run")
    waits.clear()
    stripe = Throttled(100)
    batch = queue.receive(10)
    done = on_send_messages(store, stripe, settings(), FixedClock(NOW), batch, "t", sleep=waits.append,
                            jitter=lambda: 1.0)
    assert len(waits) == 4 and max(waits) == 10.0, "five calls, four waits, none over 10 s"
    assert done.failed == [r for r, _ in batch], "then the message goes back to the queue"
    assert all(store.get_outbox_row(r.id).state == "pending" for r in more)  # type: ignore[union-attr]


def test_no_wait_runs_past_the_budget() -> None:
    store = MemoryStore()
    rows_for(store, "b", customers=1, hours=1)
    queue = MemoryQueue(lambda: NOW)
    enqueue_sends(store, queue, settings(), NOW, "run")
    waits: list[float] = []
    import time

    done = on_send_messages(store, Throttled(100), settings(), FixedClock(NOW), queue.receive(10), "t",
                            deadline=time.monotonic() + 3, sleep=waits.append, jitter=lambda: 1.0)
    assert waits == [2.0] and len(done.failed) == 1


def test_a_customer_that_fails_holds_its_later_messages_but_not_the_other_customers() -> None:
    store = MemoryStore()
    rows = rows_for(store, "f", customers=2, hours=2)
    queue = MemoryQueue(lambda: NOW)
    enqueue_sends(store, queue, settings(), NOW, "run")  # 2 tasks per customer
    batch = queue.receive(10)
    assert len(batch) == 4

    class FailsFirstOfF0(SimStripe):
        def send_meter_event(self, event: MeterEvent) -> SendResult:
            if event.customer == "cus_f0" and not self.seen.get("failed-once"):
                self.seen["failed-once"] = 1
                return SendResult(Outcome.RETRY, "500")
            return super().send_meter_event(event)

    stripe = FailsFirstOfF0(lambda: NOW)
    done = on_send_messages(store, stripe, settings(SEND_WORKER_THREADS="4"), FixedClock(NOW), batch, "t")
    f0 = [r for r, b in batch if '"cus_f0"' in b]
    assert sorted(map(str, done.failed)) == sorted(f0), "both of cus_f0's messages, none of cus_f1's"
    assert {i for i in billed(stripe)} == {r.id for r in rows if r.org_id == "fo1"}


def test_a_message_that_is_no_task_fails_alone_and_a_store_failure_is_retried() -> None:
    store = MemoryStore()
    rows_for(store, "u", customers=1, hours=1)
    queue = MemoryQueue(lambda: NOW)
    enqueue_sends(store, queue, settings(), NOW, "run")
    batch = [("junk", "not json"), *queue.receive(10)]

    class Down(MemoryStore):
        def get_outbox_row(self, row_id: str) -> OutboxRow | None:
            raise StoreUnavailable("throttled")

    done = on_send_messages(store, SimStripe(lambda: NOW), settings(), FixedClock(NOW), batch, "t")
    assert done.failed == ["junk"]
    down = Down(store.tables)
    done = on_send_messages(down, SimStripe(lambda: NOW), settings(), FixedClock(NOW), batch[1:], "t")
    assert done.failed == [batch[1][0]]


def test_a_worker_in_shadow_sends_nothing_and_leaves_the_rows_pending() -> None:
    store = MemoryStore()
    rows = rows_for(store, "sh", customers=1, hours=1)
    queue = MemoryQueue(lambda: NOW)
    enqueue_sends(store, queue, settings(), NOW, "run")
    stripe = SimStripe(lambda: NOW)
    done = on_send_messages(store, stripe, settings(SHADOW="true"), FixedClock(NOW), queue.receive(10), "t")
    assert done.failed == [] and done.counts == {"shadowSkipped": 1} and stripe.calls == 0
    assert {store.get_outbox_row(r.id).state for r in rows} == {"pending"}  # type: ignore[union-attr]
