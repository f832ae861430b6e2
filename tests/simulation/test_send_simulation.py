"""The send fanned out per customer, under its faults: enumerated, and seeded, on the in-memory adapters.

Each seed builds two hours of a fleet's usage, rolls it live, and the coordinator puts one task per
customer on a queue with SQS FIFO's semantics (a group at a time, in order, repeats within 5 minutes
dropped). One send worker invocation A takes a batch; its store and Stripe calls are counted, and for
EVERY call k of A one scenario does one thing there:

- kills A before or after the call (its messages come back after the visibility timeout, and the
  customer's group is held until then);
- fails the call (a throttled store, a Stripe error): that customer's messages are retried;
- makes Stripe accept the event and lose the answer, or answer 429 more times than A waits;
- runs the coordinator again past the queue's dedup window (every pending row offered twice), and after
  A, hands A's whole batch to a worker B again (a delete that never reached SQS: a duplicate delivery).

Then the pipeline runs on without faults and the scenario checks what every edge scenario checks:
Stripe's total per (customer, meter) equals the ledger to the micro-unit, no identifier accepted twice
(a day later too), nothing left pending.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.adapters.memory.tables import MemoryTables
from chalicelib.core.orgs import Org
from tests.simulation.edge import BUCKET, GRACE, Edge, check
from tests.simulation.engine import (
    Action,
    FaultLog,
    OrgPlan,
    Steps,
    Tick,
    Usage,
    crash_after,
    crash_before,
    failer,
    killer,
    ledger,
    record,
    seeds,
)

T0 = 1_795_564_800
PRO = [OrgPlan("acme", "legacy", "cus_acme"), OrgPlan("initech", "unified", "cus_initech"),
       OrgPlan("hooli", "legacy", "cus_hooli")]
FREE = OrgPlan("free-co", "legacy", "cus_free")
MODULE = "send_fanout"
HOURS = 2


@dataclass
class World:
    edge: Edge
    queue: MemoryQueue
    ticks: list[Tick]
    log: FaultLog
    rng: random.Random

    def worker(self, steps: Steps | None = None) -> list[tuple[str, str]]:
        """Worker A: one batch from the queue; what it did not fail is deleted. Returns the batch."""
        batch = self.queue.receive(10)
        retry = self.edge.send_worker(batch, steps)
        self.queue.delete([r for r, _ in batch if r not in retry])
        return batch


@functools.lru_cache(maxsize=4)
def _ingested(seed: int) -> tuple[MemoryTables, list[Tick]]:
    rng = random.Random(seed)
    edge = Edge(FixedClock(T0), store=MemoryStore(sample_shards=2), shadow=False)
    for o in [*PRO, FREE]:
        edge.store.put_org(Org(o.org_id, plan="free" if o is FREE else "pro", billing_mode=o.billing_mode,
                               stripe_customer_id=o.customer))
    ticks = Usage([*PRO, FREE], T0, rng, period_s=600, per_org=2).ticks_until(T0 + HOURS * BUCKET)
    edge.clock.set(T0 + HOURS * BUCKET + 100)
    assert edge.ingest([t.envelope for t in ticks])
    edge.store.advance_cursor("rollup", T0)
    return edge.store.tables, ticks


def world(seed: int) -> World:
    tables, ticks = _ingested(seed)
    clock = FixedClock(T0 + HOURS * BUCKET + GRACE + 60)
    queue = MemoryQueue(clock.now, visibility=120)
    copied = MemoryTables(**{f.name: copy.deepcopy(getattr(tables, f.name)) for f in fields(tables)
                             if f.name != "lock"})
    edge = Edge(clock, store=MemoryStore(copied, sample_shards=2), shadow=False, send_queue=queue)
    result = edge.rollup()  # rolls the hours and, live, enqueues one task per customer
    assert result is not None and result.send is not None and result.send["tasks"] == len(PRO), result
    return World(edge, queue, ticks, FaultLog(), random.Random(seed))


def steps_of_a(seed: int) -> int:
    w = world(seed)
    steps = Steps()
    w.worker(steps)
    return steps.count


Make = Callable[[World], Action]


def stripe_misbehaves(w: World) -> Action:
    """At a Stripe call: the answer lost after the accept, or a burst of 429s longer than A waits."""
    def act(name: str, run: Callable[[], Any]) -> Any:
        if name == "send_meter_event":
            fault = w.rng.choice(["lost", "429"])
            w.edge.stripe.faults += ["lost"] if fault == "lost" else ["429"] * 6
            w.log.note(f"stripe_{fault}")
        return run()

    return act


def offered_again(w: World) -> Action:
    """The coordinator runs again past the dedup window while A is mid-batch: every pending row twice."""
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.edge.clock.advance(301)
        w.edge.rollup()
        w.log.note("task_offered_twice")
        return run()

    return act


ACTIONS: list[Make] = [killer("worker_killed", crash_before), killer("worker_killed", crash_after),
                       failer("call_failed"), stripe_misbehaves, offered_again]
ENUMERATED = seeds(0.004)
SEEDED = seeds(0.1)


def finish(w: World, seed: int, batch: list[tuple[str, str]]) -> None:
    # A's delete never reached SQS: the whole batch delivered again, to a worker B, before anything else.
    w.edge.clock.advance(w.queue.visibility)
    w.edge.send_worker([(f"again-{r}", body) for r, body in batch])
    w.log.note("sqs_duplicate_delivery", len(batch))
    w.edge.settle(rounds=2)
    pro = [t for t in w.ticks if t.org is not FREE]
    check(w.edge, seed, ledger(pro), {t.envelope["id"] for t in pro}, {FREE.customer})
    record(MODULE, w.log)


@pytest.mark.parametrize("make", ACTIONS, ids=[a.__name__ for a in ACTIONS])
@pytest.mark.parametrize("seed", ENUMERATED)
def test_at_every_step_of_a_send_worker_a_kill_a_failure_or_a_repeat_changes_nothing_billed(
    seed: int, make: Make
) -> None:
    for k in range(1, steps_of_a(seed) + 1):
        w = world(seed)
        w.rng.seed(seed * 10_000 + k)
        batch = w.worker(Steps(k, make(w)))
        try:
            finish(w, seed, batch)
        except AssertionError as exc:
            raise AssertionError(f"{make.__name__} at step {k}: {exc}") from exc


@pytest.mark.parametrize("seed", SEEDED)
def test_seeded_send_workers_killed_and_repeated_bill_the_ledger(seed: int) -> None:
    w = world(seed)
    batch: list[tuple[str, str]] = []
    for _ in range(w.rng.randint(1, 4)):
        w.edge.stripe.inject(w.rng, w.log)
        steps = Steps(w.rng.randint(1, 40), w.rng.choice([crash_before, crash_after])) \
            if w.rng.random() < 0.6 else None
        if steps is not None:
            w.log.note("worker_killed")
        batch = w.worker(steps) or batch
        w.edge.clock.advance(w.rng.choice([0, 60, 121, 301]))
        if w.rng.random() < 0.5:
            w.edge.rollup()
    finish(w, seed, batch)


def test_a_send_worker_has_steps_worth_enumerating() -> None:
    w = world(0)
    steps = Steps()
    w.worker(steps)
    rows = sum(1 for r in w.edge.store.tables.outbox.values() if r.state == "sent")
    assert rows >= 4 and steps.count == 3 * rows, steps.names
    assert {"get_outbox_row", "send_meter_event", "transition"} == set(steps.names)
