"""The rollup's logic on the in-memory store: roll, stragglers, BILL_FROM, shadow/live, crashes and races.

tests/contract/ holds MemoryStore to DynamoStore's answers; tests/integration/test_rollup.py
runs a few of these end to end on moto, the scenarios both run written once in tests/rollup_scenarios.py.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.late import LATE_SHARDS
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, State
from chalicelib.services.rollup import LEASE, run_rollup
from chalicelib.settings import load_settings
from tests.conftest import BASE_ENV, T0, iso, tick
from tests.fakes.stripe import FakeStripe
from tests.rollup_scenarios import (
    H,
    concurrent_run_is_skipped_by_the_lease,
    hour_of_ticks,
    live,
    live_run_sends_once_and_replay_changes_nothing,
    parity_counts_a_backlog_delivered_after_its_hour_closed,
    parity_of,
    past_late_slot,
    send_ticks,
    shadow_roll_writes_rows_and_sends_nothing,
    straggler_is_billed_as_a_delta_once,
)


def queued(svc: Container) -> dict[str, OutboxRow]:
    """Every row still queued (shadow or pending), through the port."""
    return {r.id: r for q in ("shadow", "pending") for r in svc.store.outbox_queue(q, limit=10_000)}


def state_of(svc: Container, row_id: str) -> State | None:
    row = svc.store.get_outbox_row(row_id)
    return row.state if row else None


def test_shadow_roll_writes_rows_and_sends_nothing(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    shadow_roll_writes_rows_and_sends_nothing(svc, clock, fake, lambda: queued(svc))


def test_bucket_not_rolled_before_grace(svc: Container, clock: FixedClock, orgs: None) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 599)
    assert run_rollup(svc, "test").roll["buckets"] == []
    clock.set(T0 + H + 600)
    assert run_rollup(svc, "test").roll["buckets"] == [T0]


def test_live_run_sends_once_and_replay_changes_nothing(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    live_run_sends_once_and_replay_changes_nothing(svc, clock, fake)
    assert queued(svc) == {}
    assert state_of(svc, f"leg:{T0}:sandbox_compute_sandbox_1gb") == "sent"


def test_identifier_and_payload_follow_the_contract(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, [tick("a", "leg", iso(T0 + 100), interval_s=Decimal("0.1234567"))])
    clock.set(T0 + H + 900)
    run_rollup(live(svc), "test")
    [event] = fake.seen.values()
    assert event.identifier == f"leg:{T0}:sandbox_compute_sandbox_1gb"
    assert (event.timestamp, event.value, event.customer) == (T0 + H, "0.123457", "cus_leg")


def test_straggler_is_billed_as_a_delta_once(svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    straggler_is_billed_as_a_delta_once(svc, clock, fake)


def test_straggler_updates_parity_aggregates(svc: Container, clock: FixedClock, orgs: None) -> None:
    from chalicelib.services.parity import Window, usage_parity

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    run_rollup(svc, "test")
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])
    past_late_slot(svc, clock)
    run_rollup(svc, "test")
    body = usage_parity(svc.store, svc.settings, Window(T0, T0 + H), svc.now())
    assert body["orgs"] == [{"org_id": "leg", "gb_seconds": 220.0, "samples": 11}]
    assert svc.store.aggregates(T0)[0].samples == 11, "the straggler is in the stored aggregate"


def test_quiet_runs_read_one_partition_and_a_straggler_s_slot_is_swept_once_closed(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    armed = live(svc)
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    for minutes in (15, 30):
        clock.set(T0 + H + 60 * minutes)
        assert run_rollup(armed, "quiet").roll["late"] == {"slots": [], "samples": 0, "rows": 0, "unbilled": [],
                                                           "waiting": 0, "tasks": 0, "open": 0}
    assert memory.faults.calls("late_slots") == 2 and memory.faults.calls("late_slot_samples") == 0
    send_ticks(armed, [tick("late", "leg", iso(T0 + 3000))])
    still_open = run_rollup(armed, "open").roll["late"]
    assert still_open["slots"] == [] and still_open["open"] == 1, "its slot is still filling"
    past_late_slot(svc, clock)
    result = run_rollup(armed, "closed").roll["late"]
    assert result["slots"] == [T0 + H + 30 * 60] and result["samples"] == 1 and result["rows"] == 1
    assert memory.faults.calls("late_slot_samples") == LATE_SHARDS, "one task per index partition"
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_1gb")] == Decimal("220")
    calls = memory.faults.calls("late_slots")
    assert run_rollup(armed, "quiet again").roll["late"]["slots"] == []
    assert memory.faults.calls("late_slots") == calls + 1 and memory.faults.calls("late_slot_samples") == LATE_SHARDS


def test_on_time_writes_record_no_slot_and_each_late_write_records_its_own(
    svc: Container, clock: FixedClock, orgs: None
) -> None:
    clock.set(T0 + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    assert svc.store.late_slots(0) == []
    clock.set(T0 + 2 * H)
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])
    clock.set(T0 + 2 * H + svc.settings.LATE_SLOT_SECONDS)
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])  # a replay may be late too: its slot is recorded
    assert [s.slot for s in svc.store.late_slots(0)] == [T0 + 2 * H, T0 + 2 * H + svc.settings.LATE_SLOT_SECONDS]


def test_a_late_slot_waits_for_the_buckets_it_touches_to_be_rolled(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    """Stragglers of a bucket that is not rolled yet (its workers slow) wait: its first emission comes first."""
    from chalicelib.adapters.memory.queue import MemoryQueue
    from chalicelib.services.rollup_fanout import on_messages

    queue = MemoryQueue(clock.now, visibility=60)
    armed = live(svc)
    with_queue = Container(armed.settings, svc.store, svc.archive, svc.clock, meter_gateway=armed.meter_gateway,
                           task_queue=queue)
    svc.store.advance_cursor("rollup", T0)  # the hours before are not this story
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 700)
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])  # the hour is closed: a straggler, its bucket unrolled
    past_late_slot(svc, clock)
    first = run_rollup(with_queue, "coordinator").roll
    assert first["waiting"] == [T0] and first["late"]["waiting"] == 1
    messages = queue.receive(100)
    late_tasks = [m for m in messages if '"late"' in m[1]]
    bucket_tasks = [m for m in messages if m not in late_tasks]
    assert len(late_tasks) == LATE_SHARDS and bucket_tasks
    done = on_messages(svc.store, armed.settings, late_tasks, "late worker", clock.now)
    assert done.swept == {} and done.failed == [], "every late partial written, the reduce waits for the bucket"
    assert on_messages(svc.store, armed.settings, bucket_tasks, "worker", clock.now).rolled.keys() == {T0}
    second = run_rollup(with_queue, "coordinator").roll
    assert second["late"]["slots"] == [T0 + H + 600] and second["late"]["samples"] == 1
    run_rollup(with_queue, "send")
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_1gb")] == Decimal("220")


def test_bill_from_consumes_earlier_buckets(svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, n=10))
    clock.set(T0 + 2 * H + 10)
    send_ticks(svc, hour_of_ticks("b", "leg", T0 + H, n=20))
    clock.set(T0 + 2 * H + 900)
    result = run_rollup(live(svc, BILL_FROM=str(T0 + H)), "test").body()
    assert result["cfg"]["billFrom"] == T0 + H
    assert result["roll"]["consumed"] == 1
    assert dict(fake.totals) == {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("400")}


def test_arming_live_with_past_bill_from_promotes_shadow_rows(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, n=10))
    clock.set(T0 + 2 * H + 10)
    send_ticks(svc, hour_of_ticks("b", "leg", T0 + H, n=20))
    clock.set(T0 + 2 * H + 900)
    run_rollup(svc, "shadow")  # both hours rolled in shadow
    assert {r.state for r in queued(svc).values()} == {"shadow"} and len(queued(svc)) == 2
    result = run_rollup(live(svc, BILL_FROM=str(T0 + H)), "armed").body()
    assert result["roll"]["promoted"] == 1
    assert dict(fake.totals) == {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("400")}
    assert state_of(svc, f"leg:{T0}:sandbox_compute_sandbox_1gb") == "shadow"  # before BILL_FROM: never billed


CRASH_POINTS = [
    "save_aggregates",
    "create_outbox_rows",
    "mark_bucket_rolled",
    "advance_cursor",
    "transition",
    "put_partial",
    "apply_late",
    "mark_late_swept",
    "release_lease",
]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("method", CRASH_POINTS)
def test_crash_at_any_step_then_rerun_bills_exactly_once(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe, method: str, when: Any
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=30))
    clock.set(T0 + H + 900)
    armed = live(svc)
    run_rollup(armed, "warm")  # a rolled bucket for the late path to use
    send_ticks(armed, [tick("late", "leg", iso(T0 + 3000))])
    clock.set(T0 + 2 * H + 10)
    send_ticks(armed, hour_of_ticks("n", "uni", T0 + H, n=30))
    clock.set(T0 + 2 * H + 900)  # the straggler's slot (T0 + H + 900) is closed by then
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    # A second process on the same tables, killed at its first call of `method` (before or after it wrote).
    doomed = memory.handle()
    doomed.faults.fail_on(method, when=when, exc=Crash)
    with pytest.raises(Crash):
        doomed_run = Container(armed.settings, doomed, svc.archive, svc.clock, meter_gateway=armed.meter_gateway)
        run_rollup(doomed_run, "crash")
    assert doomed.faults.calls(method) >= 1, "the run reached the crash point"
    clock.advance(armed.settings.LEASE_SECONDS)  # a killed run never releases its lease: it lapses
    run_rollup(armed, "rerun")
    run_rollup(armed, "again")
    assert dict(fake.totals) == {
        ("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("620"),
        ("cus_uni", "sandbox_compute_sandbox_overage"): Decimal("600"),
    }


def test_concurrent_run_is_skipped_by_the_lease(svc: Container, clock: FixedClock, orgs: None) -> None:
    concurrent_run_is_skipped_by_the_lease(svc, clock)


def test_runs_outliving_their_leases_race_and_still_bill_once(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=50) + hour_of_ticks("u", "uni", T0, n=50))
    clock.set(T0 + H + 900)
    armed = live(svc)
    fake.latency = 0.02
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    # Three runs, each starting as the previous one's lease lapses while it is still working:
    # the lease excludes none of them, so only the store's conditional writes keep billing exact.
    lease = armed.settings.LEASE_SECONDS
    held = [threading.Event() for _ in range(3)]
    racers = []
    for i in range(3):
        handle = memory.handle()
        handle.faults.on("acquire_lease", held[i].set, when="after")
        if i:
            handle.faults.on("acquire_lease", held[i - 1].wait)
        racers.append(Container(armed.settings, handle, svc.archive, FixedClock(clock.now() + i * lease),
                               meter_gateway=armed.meter_gateway))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda r=r: results.append(run_rollup(r, "racer"))) for r in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.skipped for r in results] == [None, None, None], "every racer held the lease"
    run_rollup(armed, "settle")
    assert dict(fake.totals) == {
        ("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("1000"),
        ("cus_uni", "sandbox_compute_sandbox_overage"): Decimal("1000"),
    }


def test_a_run_that_read_settled_aggregates_after_another_billed_stragglers_into_them_bills_nothing_more(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    # Found by tests/simulation/test_rollup_race_simulation.py: every tick of the hour arrives after it
    # closed, so the first emission is empty and the stragglers alone bill it (a late row), adding their
    # seconds to the stored aggregates. A run that found the bucket settled and read those aggregates
    # only then must not emit them again as first-emission rows.
    clock.set(T0 + H + 700)
    armed = live(svc)
    send_ticks(armed, hour_of_ticks("l", "leg", T0, n=10))
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    slow = memory.handle()
    # Run B comes once A's lease lapsed and the stragglers' late slot closed.
    other = Container(armed.settings, memory.handle(), svc.archive,
                      FixedClock(clock.now() + 361 + armed.settings.LATE_SLOT_SECONDS), meter_gateway=fake)
    # Run A (its lease about to lapse) stops just before settling the hour; run B does it all. A reads
    # each bucket's state twice (is it rolled? is it settled?), the hour last of the look-back.
    last = 2 * armed.settings.ROLLUP_LOOKBACK_BUCKETS
    slow.faults.on("bucket_state", lambda: run_rollup(other, "b"), nth=last)
    run_rollup(Container(armed.settings, slow, svc.archive, clock, meter_gateway=fake), "a")
    run_rollup(live(svc), "settle")
    assert dict(fake.totals) == {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("200")}


def test_a_lease_held_elsewhere_is_released_only_by_its_holder(svc: Container, clock: FixedClock) -> None:
    assert svc.store.acquire_lease(LEASE, "other-run", svc.now(), 300)
    assert run_rollup(svc, "test").skipped
    assert not svc.store.acquire_lease(LEASE, "probe", svc.now(), 300), "the skipped run left it alone"


def test_accepted_but_answer_lost_is_not_billed_twice(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    fake.accept_then_fail = 1
    armed = live(svc)
    first = run_rollup(armed, "test").body()
    assert first["send"]["retryLater"] == 1
    second = run_rollup(armed, "test").body()
    assert second["send"]["duplicate"] == 1
    assert dict(fake.totals) == {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("200")}
    assert state_of(svc, f"leg:{T0}:sandbox_compute_sandbox_1gb") == "sent"


def test_rows_wait_for_a_customer_and_old_rows_become_unbillable(
    svc: Container, clock: FixedClock, fake: FakeStripe
) -> None:
    from chalicelib.core.outbox import OutboxRow

    svc.meter_gateway = fake
    svc.store.put_org(Org("nocus", plan="pro"))
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("n", "nocus", T0, n=10))
    clock.set(T0 + H + 900)
    armed = live(svc)
    assert run_rollup(armed, "test").body()["send"]["waitingNoCustomer"] == 1
    old = T0 - 40 * 86400
    svc.store.create_outbox_rows(
        [
            OutboxRow(
                f"nocus:{old}:sandbox_compute_sandbox_1gb",
                "nocus",
                old,
                old + H,
                "sandbox_compute_sandbox_1gb",
                Decimal(5),
                "first",
                "pending",
            )
        ]
    )
    svc.store.put_org(Org("nocus", plan="pro", stripe_customer_id="cus_late"))
    result = run_rollup(armed, "test").body()
    assert (result["send"]["sent"], result["send"]["unbillable"]) == (1, 1)
    assert state_of(svc, f"nocus:{old}:sandbox_compute_sandbox_1gb") == "unbillable"
    assert fake.calls == 1


def test_rejected_row_is_failed_not_retried_forever(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    from chalicelib.core.meter_events import Outcome

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    fake.faults = [Outcome.REJECTED]
    assert run_rollup(live(svc), "test").body()["send"]["failed"] == 1
    assert run_rollup(live(svc), "test").body()["send"]["calls"] == 0
    assert state_of(svc, f"leg:{T0}:sandbox_compute_sandbox_1gb") == "failed"


def test_rate_limit_is_waited_out(svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    from chalicelib.core.meter_events import Outcome

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    fake.faults = [Outcome.RATE_LIMITED, Outcome.RATE_LIMITED]
    send = run_rollup(live(svc), "test").body()["send"]
    assert (send["rateLimited"], send["sent"], send["calls"]) == (2, 1, 3)


def test_sending_is_concurrent_but_never_twice_at_once_per_customer_meter(
    svc: Container, clock: FixedClock, fake: FakeStripe
) -> None:
    svc.meter_gateway = fake
    fake.latency = 0.01
    ticks = []
    for o in range(12):
        svc.store.put_org(Org(f"o{o}", plan="pro", stripe_customer_id=f"cus_{o}"))
    clock.set(T0 + 3 * H + 10)
    for h in range(3):
        for o in range(12):
            ticks += [tick(f"{o}-{h}-{mb}", f"o{o}", iso(T0 + h * H + 100), memory_mb=mb) for mb in (1024, 4096)]
    send_ticks(svc, ticks)
    clock.set(T0 + 4 * H + 900)
    send = run_rollup(live(svc), "test").body()["send"]
    assert send["sent"] == 3 * 12 * 2
    assert fake.concurrency_violations == 0 and fake.max_parallel > 1


def test_rollup_runs_only_in_the_home_region(svc: Container, clock: FixedClock, orgs: None) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    away = Container(load_settings(BASE_ENV | {"HOME_REGION": "false"}), svc.store, svc.archive, svc.clock)
    assert "home region" in run_rollup(away, "test").body()["skipped"]
    assert svc.store.bucket_state(T0) is None


def test_parity_counts_a_backlog_delivered_after_its_hour_closed_before_and_after_the_sweep(
    svc: Container, clock: FixedClock, orgs: None
) -> None:
    parity_counts_a_backlog_delivered_after_its_hour_closed(svc, clock)


def test_parity_of_a_window_counts_late_and_on_time_samples_swept_or_not(
    svc: Container, clock: FixedClock, orgs: None
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, 1024, n=90))  # [T0, T0+1800) on time
    clock.set(T0 + 2 * H + 900)
    run_rollup(svc, "test")
    send_ticks(svc, [tick(f"b{i}", "leg", iso(T0 + 1800 + 20 * (i + 1))) for i in range(90)])  # late
    send_ticks(svc, hour_of_ticks("c", "leg", T0 + H, 1024, n=45))  # next hour, late too
    # [T0, T0 + 2H): 90 on-time and 90 late ticks of the first hour, 45 late of the second (not swept yet).
    assert parity_of(svc, T0, T0 + 2 * H) == {"leg": (90 + 90 + 45) * 20.0}
    run_rollup(svc, "test")
    assert parity_of(svc, T0, T0 + 2 * H) == {"leg": (90 + 90 + 45) * 20.0}


def test_a_shard_task_reads_its_bucket_state_once_before_the_reduce(
    svc: Container, clock: FixedClock, orgs: None
) -> None:
    """The fan-out's coordination reads are bench/rollup's read budget: a task hands the state it read to the
    reducer rather than reading it again (roll_bucket still reads it afresh before any row or mark), and
    writes its deterministic partial without first asking whether it is there."""
    from chalicelib.core.fanout import ShardTask
    from chalicelib.services.rollup_fanout import handle_task

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    memory: MemoryStore = svc.store  # type: ignore[assignment]
    shards = memory.bucket_shard_count(T0)
    before, markers = memory.faults.calls("bucket_state"), memory.faults.calls("partial_shards")
    for k in range(shards - 1):
        assert handle_task(memory, svc.settings, ShardTask(T0, k), "worker", clock.now()) is None
    assert memory.faults.calls("bucket_state") == before + shards - 1, "one read per task that does not reduce"
    assert memory.faults.calls("partial_shards") == markers + shards - 1, "the markers once, by the reduce"
    report = handle_task(memory, svc.settings, ShardTask(T0, shards - 1), "last", clock.now())
    assert report is not None and report["orgs"] == 1
    assert memory.faults.calls("bucket_state") == before + shards + 1, "the last: its read, then roll_bucket's"
