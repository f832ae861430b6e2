"""The coordinator every 5 minutes (app.py): a run more often enqueues nothing twice within
FANOUT_RETRY_SECONDS, re-enqueues only the shards still missing after it, never touches a settled bucket,
and a quiet run only reads (its cost in docs/capacity.md: a few reads, the lease and the cursor)."""

from __future__ import annotations

from decimal import Decimal

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.faults import Faults
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.ports import BillingStore
from chalicelib.services.rollup import run_rollup
from chalicelib.services.rollup_fanout import on_messages
from tests.conftest import T0
from tests.fakes.stripe import FakeStripe
from tests.rollup_scenarios import H, hour_of_ticks, live, send_ticks

EVERY = 300  # the schedule's period (app.py)
WRITES = {"put_partial", "save_aggregates", "create_outbox_rows", "mark_bucket_rolled", "apply_late",
          "mark_late_swept", "transition", "put_samples", "claim_fanout"}


def test_a_coordinator_every_5_minutes_enqueues_each_task_once_per_retry_period_and_a_quiet_run_only_reads(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    queue = MemoryQueue(clock.now, visibility=60)
    armed = live(svc)
    memory.advance_cursor("rollup", T0)  # the hours before are not this story
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, n=60))
    shards = memory.bucket_shard_count(T0)
    retry = armed.settings.FANOUT_RETRY_SECONDS
    assert retry % EVERY == 0 and retry > EVERY

    def coordinator(at: int, store: BillingStore = memory) -> dict[str, object]:
        clock.set(at)
        svc_at = Container(armed.settings, store, svc.archive, clock, meter_gateway=fake, task_queue=queue)
        return run_rollup(svc_at, "schedule").roll

    closed = T0 + H + armed.settings.GRACE_SECONDS
    assert coordinator(closed)["tasks"] == shards
    # The workers take only half of the tasks; runs every 5 minutes meanwhile enqueue nothing ...
    first = queue.receive(shards)
    done = on_messages(memory, armed.settings, first[: shards // 2], "worker", clock.now)
    queue.delete([r for r, _ in first[: shards // 2]])
    assert done.failed == [] and done.rolled == {}
    runs = range(closed + EVERY, closed + retry, EVERY)
    assert [coordinator(t)["tasks"] for t in runs] == [0] * len(runs)
    # ... until the claim's period has passed: then only the shards whose partial is still missing.
    assert coordinator(closed + retry)["tasks"] == shards - shards // 2
    clock.set(closed + retry + 61)  # the first deliveries' visibility timeout is over: every task comes back
    while batch := queue.receive(100):
        on_messages(memory, armed.settings, batch, "worker", clock.now)
        queue.delete([r for r, _ in batch])
    assert memory.bucket_state(T0).rolled  # type: ignore[union-attr]
    assert coordinator(closed + retry + EVERY)["tasks"] == 0  # the run that sends the bucket's row
    billed = {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal(1200)}
    assert dict(fake.totals) == billed
    # A rolled and sent bucket: every later run reads, enqueues nothing, writes no billing item.
    for k in range(2, 5):
        quiet = memory.handle(Faults(BillingStore.__abstractmethods__))
        roll = coordinator(closed + retry + k * EVERY, quiet)
        assert (roll["tasks"], roll["buckets"], roll["rows"]) == (0, [], 0)
        calls = {m: quiet.faults.calls(m) for m in BillingStore.__abstractmethods__ if quiet.faults.calls(m)}
        assert not WRITES & set(calls), calls
        assert sum(calls.values()) <= 12, calls
    assert len(queue) == 0 and dict(fake.totals) == billed


def test_a_worker_reads_a_buckets_markers_once_after_its_batchs_last_partial_of_it_and_rolls_it(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    """Every shard's task in one batch (some twice, as SQS may deliver them): one read of the partial markers
    for the bucket, not one per task (on DynamoDB, a query each), and the batch's worker rolls it."""
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    queue = MemoryQueue(clock.now, visibility=60)
    armed = live(svc)
    memory.advance_cursor("rollup", T0)
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, n=60))
    clock.set(T0 + H + armed.settings.GRACE_SECONDS)
    run_rollup(Container(armed.settings, memory, svc.archive, clock, meter_gateway=fake, task_queue=queue), "schedule")
    batch = queue.receive(100)
    shards = memory.bucket_shard_count(T0)
    assert len(batch) == shards > 1
    worker = memory.handle(Faults(BillingStore.__abstractmethods__))
    done = on_messages(worker, armed.settings, batch + batch[:3], "worker", clock.now)
    assert done.rolled.keys() == {T0} and done.failed == []
    assert (worker.faults.calls("put_partial"), worker.faults.calls("partial_shards")) == (shards + 3, 1)
