"""The fanned-out rollup under its delivery faults: enumerated, and seeded, on the in-memory adapters.

Each seed builds three hours of a fleet's usage over 2 sample shards, delivered after the first two hours
closed (their ticks are stragglers of one closed late slot; the third hour's bucket is not rolled yet, and a
last batch of stragglers of every hour fills a slot still open). It runs the coordinator (one task per
bucket and shard, and per index partition of the closed slot, on a queue with SQS's semantics) and hands
every task to one worker invocation A, as a batch the queue shuffled and partly duplicated (standard SQS: at least once,
any order). A's store calls are counted; for EVERY call k of A, one scenario does one thing there:

- kills A before or after the call (its messages come back after the visibility timeout);
- fails the call (a throttled store: that message is reported failed and retried);
- runs a second worker B to completion on every task again (two reducers at once, and each partial
  written twice: A writes its partial after B did, or B after A);
- as the last, but B is itself killed at one of its own steps j (seeded).

Then the pipeline runs on without faults (coordinator, workers, send) and the scenario checks what every
edge scenario checks: Stripe's total per (customer, meter) equals the ledger to the micro-unit, no
identifier accepted twice, nothing left pending, no straggler left. A reducer that combined before every
partial was present would bill a bucket short of a shard: the ledger check fails (a mutant, by hand).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.adapters.memory.tables import MemoryTables
from chalicelib.core.fanout import ShardTask
from chalicelib.core.late import LATE_SHARDS
from chalicelib.core.orgs import Org
from chalicelib.services.rollup_fanout import on_messages
from tests.simulation.edge import BUCKET, GRACE, Edge, check, copy_tables
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
SHARDS = 2
LATE_SLOT = T0 + 3 * BUCKET  # closed when the coordinator runs; the last stragglers' slot is still open
PRO = [OrgPlan("acme", "legacy", "cus_acme"), OrgPlan("initech", "unified", "cus_initech"),
       OrgPlan("hooli", "legacy", "cus_hooli")]
FREE = OrgPlan("free-co", "legacy", "cus_free")
MODULE = "rollup_fanout"


@dataclass
class World:
    edge: Edge
    queue: MemoryQueue
    ticks: list[Tick]
    log: FaultLog
    rng: random.Random

    def worker(self, steps: Steps | None = None, duplicate: float = 0.0) -> None:
        """One worker invocation: a batch from the queue (shuffled, some messages twice), then the deletes."""
        batch = self.queue.receive(1000)
        dups = [m for m in batch if self.rng.random() < duplicate]
        if dups:
            self.log.note("sqs_duplicate_delivery", len(dups))
        batch = batch + dups
        self.rng.shuffle(batch)
        self.log.note("sqs_reordered_delivery")
        store: Any = self.edge.store.handle()
        if steps is not None:
            store = steps.wrap(store)
        try:
            done = on_messages(store, self.edge.settings(), batch, "worker", self.edge.clock.now)
        except Crash:
            return  # killed: nothing deleted, every message comes back after the visibility timeout
        self.queue.delete(list({r for r, _ in batch} - set(done.failed)))


@functools.lru_cache(maxsize=4)
def _ingested(seed: int) -> tuple[MemoryTables, list[Tick]]:
    """The store once the fleet's ticks are in (built once per seed; each scenario starts from a copy)."""
    rng = random.Random(seed)
    edge = Edge(FixedClock(T0), store=MemoryStore(sample_shards=SHARDS), shadow=False)
    for o in [*PRO, FREE]:
        edge.store.put_org(Org(o.org_id, plan="free" if o is FREE else "pro", billing_mode=o.billing_mode,
                               stripe_customer_id=o.customer))
    ticks = Usage([*PRO, FREE], T0, rng, period_s=300, per_org=2).ticks_until(T0 + 3 * BUCKET)
    rng.shuffle(ticks)
    late = {t.envelope["id"] for t in ticks if rng.random() < 0.1}
    edge.clock.set(T0 + 3 * BUCKET + 100)  # the first two hours are closed: their ticks are stragglers (LATE_SLOT)
    assert edge.ingest([t.envelope for t in ticks if t.envelope["id"] not in late])
    edge.clock.set(T0 + 3 * BUCKET + GRACE)
    assert edge.ingest([t.envelope for t in ticks if t.envelope["id"] in late])  # stragglers of every hour
    edge.store.advance_cursor("rollup", T0)  # the hours before the fleet started are not this story
    return edge.store.tables, ticks


def world(seed: int) -> World:
    tables, ticks = _ingested(seed)
    clock = FixedClock(T0 + 3 * BUCKET + GRACE)
    queue = MemoryQueue(clock.now, visibility=120)
    edge = Edge(clock, store=MemoryStore(copy_tables(tables), sample_shards=SHARDS), shadow=False, queue=queue)
    edge.rollup()  # the coordinator: tasks for the closed buckets, and for the closed late slot
    assert len(queue) == 3 * SHARDS + LATE_SHARDS
    return World(edge, queue, ticks, FaultLog(), random.Random(seed))


def steps_of_a(seed: int) -> int:
    w = world(seed)
    steps = Steps()
    w.worker(steps, duplicate=0.3)
    return steps.count


Make = Callable[[World], Action]


kill_before, kill_after = killer("worker_killed", crash_before), killer("worker_killed", crash_after)
call_fails = failer("store_throttled")


def _again(w: World) -> None:
    # Every task again, as a redelivery would hand it to a second worker (A's are hidden: send copies).
    w.queue.send([ShardTask(b, k).body() for b in (T0, T0 + BUCKET, T0 + 2 * BUCKET) for k in range(SHARDS)]
                 + [ShardTask(LATE_SLOT, k, late=True).body() for k in range(LATE_SHARDS)])


def b_runs(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.log.note("second_worker_at_once")
        w.log.note("partial_written_twice")
        _again(w)
        w.worker()
        return run()

    return act


def b_runs_and_dies(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.log.note("second_worker_at_once")
        w.log.note("worker_killed")
        _again(w)
        w.worker(Steps(w.rng.randint(1, 60), w.rng.choice([crash_before, crash_after])))
        return run()

    return act


ACTIONS: list[Make] = [kill_before, kill_after, call_fails, b_runs, b_runs_and_dies]
ENUMERATED = seeds(0.004)
SEEDED = seeds(0.15)


def finish(w: World, seed: int) -> None:
    w.edge.settle(rounds=2)
    pro = [t for t in w.ticks if t.org is not FREE]
    check(w.edge, seed, ledger(pro), {t.envelope["id"] for t in pro}, {FREE.customer})
    for b in (T0, T0 + BUCKET, T0 + 2 * BUCKET):
        state = w.edge.store.bucket_state(b)
        assert state is not None and state.rolled, f"seed {seed}: bucket {b} not rolled"
    record(MODULE, w.log)


@pytest.mark.parametrize("make", ACTIONS, ids=[a.__name__ for a in ACTIONS])
@pytest.mark.parametrize("seed", ENUMERATED)
def test_at_every_step_of_a_worker_a_kill_a_failure_or_a_second_worker_changes_nothing_billed(
    seed: int, make: Make
) -> None:
    for k in range(1, steps_of_a(seed) + 1):
        w = world(seed)
        w.rng.seed(seed * 10_000 + k)
        w.worker(Steps(k, make(w)), duplicate=0.3)
        try:
            finish(w, seed)
        except AssertionError as exc:
            raise AssertionError(f"{make.__name__} at step {k}: {exc}") from exc


@pytest.mark.parametrize("seed", SEEDED)
def test_seeded_deliveries_duplicated_reordered_and_killed_bill_the_ledger(seed: int) -> None:
    w = world(seed)
    for _ in range(w.rng.randint(1, 4)):  # several invocations, each killed somewhere or not
        steps = Steps(w.rng.randint(1, 80), w.rng.choice([crash_before, crash_after])) if w.rng.random() < 0.6 \
            else None
        if steps is not None:
            w.log.note("worker_killed")
        w.worker(steps, duplicate=0.5)
        w.edge.clock.advance(w.rng.choice([0, 60, 121]))
    finish(w, seed)


def test_a_worker_invocation_has_steps_worth_enumerating() -> None:
    w = world(0)
    steps = Steps()
    w.worker(steps, duplicate=0.3)
    assert steps.count >= 3 * SHARDS * 4, steps.names
    assert {"shard_samples", "put_partial", "partials", "save_aggregates", "create_outbox_rows",
            "mark_bucket_rolled", "late_slot_samples"} <= set(steps.names), steps.names
