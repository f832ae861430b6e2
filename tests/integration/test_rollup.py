"""The rollup against moto: roll, stragglers, BILL_FROM, shadow/live, crashes and races."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.bootstrap import Services
from chalicelib.core.orgs import Org
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import load_settings
from tests.conftest import BASE_ENV, T0, iso, tick
from tests.fakes.stripe import FakeStripe

H = 3600


def live(svc: Services, **env: str) -> Services:
    settings = load_settings(BASE_ENV | {"SHADOW": "false"} | env)
    return Services(settings, svc.store, svc.archive, svc.clock, {"stripe": svc.extras.get("stripe")})


def send_ticks(svc: Services, ticks: list[dict[str, Any]]) -> None:
    ingest_batch(ticks, "cell-a", svc.store, svc.settings, svc.now())


def hour_of_ticks(prefix: str, org: str, hour_start: int, memory_mb: int = 1024, n: int = 180) -> list[dict[str, Any]]:
    return [tick(f"{prefix}{i}", org, iso(hour_start + 20 * (i + 1)), memory_mb=memory_mb) for i in range(n)]


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def orgs(svc: Services, fake: FakeStripe) -> None:
    svc.extras["stripe"] = fake
    svc.store.put_org(Org("leg", plan="pro", billing_mode="legacy", stripe_customer_id="cus_leg"))
    svc.store.put_org(Org("uni", plan="pro", billing_mode="unified", stripe_customer_id="cus_uni"))


def rows(svc: Services) -> dict[str, Any]:
    items = svc.store.client.scan(TableName=svc.store.outbox_table)["Items"]  # type: ignore[attr-defined]
    from chalicelib.adapters.dynamodb.store import outbox_from_item

    return {r.id: r for r in map(outbox_from_item, items)}


def test_shadow_roll_writes_rows_and_sends_nothing(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, 4096)[:179] + hour_of_ticks("u", "uni", T0, 8192, 90))
    # No tier for 2048 MB: a legacy org's is unbilled and reported; a unified org's is billed as GB-seconds.
    send_ticks(svc, [tick("odd", "leg", iso(T0 + 3600), memory_mb=2048),
                     tick("odd-u", "uni", iso(T0 + 3600), memory_mb=2048)])
    clock.set(T0 + H + 600)
    result = run_rollup(svc, "test").body()
    assert result["ok"] is True and result["shadow"] is True and result["send"] is None
    assert result["roll"]["buckets"] == [T0]
    assert result["roll"]["unbilled"] == [
        {"org_id": "leg", "memory_mb": 2048, "seconds": "20.000000", "gb_seconds": "40.000000", "bucket_start": T0}
    ]
    got = rows(svc)
    assert {r.id: (r.value, r.state) for r in got.values()} == {
        f"leg:{T0}:sandbox_compute_sandbox_4gb": (Decimal("3580"), "shadow"),
        # 1800 s x 8 GB + 20 s x 2 GB
        f"uni:{T0}:sandbox_compute_sandbox_overage": (Decimal("14440"), "shadow"),
    }
    assert fake.calls == 0


def test_bucket_not_rolled_before_grace(svc: Services, clock: FixedClock, orgs: None) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 599)
    assert run_rollup(svc, "test").roll["buckets"] == []
    clock.set(T0 + H + 600)
    assert run_rollup(svc, "test").roll["buckets"] == [T0]


def test_live_run_sends_once_and_replay_changes_nothing(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0) + hour_of_ticks("u", "uni", T0, 4096))
    clock.set(T0 + H + 900)
    armed = live(svc)
    first = run_rollup(armed, "test").body()
    assert first["send"]["sent"] == 2 and fake.calls == 2
    assert fake.totals == {
        ("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("3600"),
        ("cus_uni", "sandbox_compute_sandbox_overage"): Decimal("14400"),
    }
    again = run_rollup(armed, "test").body()
    assert again["roll"]["buckets"] == [] and again["send"]["calls"] == 0
    assert all(r.state == "sent" for r in rows(svc).values())


def test_identifier_and_payload_follow_the_contract(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, [tick("a", "leg", iso(T0 + 100), interval_s=Decimal("0.1234567"))])
    clock.set(T0 + H + 900)
    run_rollup(live(svc), "test")
    [event] = fake.seen.values()
    assert event.identifier == f"leg:{T0}:sandbox_compute_sandbox_1gb"
    assert (event.timestamp, event.value, event.customer) == (T0 + H, "0.123457", "cus_leg")


def test_straggler_is_billed_as_a_delta_once(svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=100))
    clock.set(T0 + H + 900)
    armed = live(svc)
    run_rollup(armed, "test")
    late = [tick("late1", "leg", iso(T0 + 3000)), tick("late2", "leg", iso(T0 + 3020), memory_mb=4096)]
    send_ticks(armed, late)
    send_ticks(armed, late)  # the forwarder retries: still once
    result = run_rollup(armed, "test").body()
    assert result["roll"]["late"]["samples"] == 2 and result["roll"]["late"]["rows"] == 2
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_1gb")] == Decimal("2020")
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_4gb")] == Decimal("20")
    # Replays of the stragglers and of on-time ticks after the roll bill nothing more.
    send_ticks(armed, late + hour_of_ticks("l", "leg", T0, n=5))
    after = run_rollup(armed, "test").body()
    assert after["roll"]["late"]["samples"] == 0 and after["send"]["calls"] == 0
    assert sum(fake.totals.values()) == Decimal("2040")


def test_straggler_updates_parity_aggregates(svc: Services, clock: FixedClock, orgs: None) -> None:
    from chalicelib.services.parity import Window, usage_parity

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    run_rollup(svc, "test")
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])
    run_rollup(svc, "test")
    body = usage_parity(svc.store, svc.settings, Window(T0, T0 + H), svc.now())
    assert body["orgs"] == [{"org_id": "leg", "gb_seconds": 220.0, "samples": 11}]


def late_index_queries(svc: Services) -> list[int]:
    """A counter of Query calls on the late index, from now on."""
    calls: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == "late":
            calls.append(1)

    svc.store.client.meta.events.register("provide-client-params.dynamodb.Query", count)  # type: ignore[attr-defined]
    return calls


def test_quiet_runs_skip_the_late_index_and_a_straggler_wakes_it(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    armed = live(svc)
    queries = late_index_queries(svc)
    for minutes in (15, 30):  # first sight of the signal, then a sweep settled after it
        clock.set(T0 + H + 60 * minutes)
        assert run_rollup(armed, "test").roll["late"]["swept"] is True
    swept = len(queries)
    clock.set(T0 + H + 45 * 60)
    assert run_rollup(armed, "quiet").roll["late"]["swept"] is False
    assert len(queries) == swept  # a quiet run reads one control item, not the index
    send_ticks(armed, [tick("late", "leg", iso(T0 + 3000))])
    clock.set(T0 + 2 * H)
    result = run_rollup(armed, "woken").roll["late"]
    assert result["swept"] is True and result["samples"] == 1
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_1gb")] == Decimal("220")


def test_on_time_writes_leave_the_late_signal_alone(svc: Services, clock: FixedClock, orgs: None) -> None:
    clock.set(T0 + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    assert svc.store.late_signal().version == 0
    clock.set(T0 + 2 * H)
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])
    send_ticks(svc, [tick("late", "leg", iso(T0 + 3000))])  # a replay may be late too: it bumps again
    assert svc.store.late_signal().version == 2


def test_the_backstop_sweeps_a_quiet_index_every_late_sweep_seconds(
    svc: Services, clock: FixedClock, orgs: None
) -> None:
    queries = late_index_queries(svc)
    for minutes in (0, 15, 30, 45):
        clock.set(T0 + H + 60 * minutes)
        run_rollup(svc, "test")
    quiet = len(queries)
    clock.set(T0 + H + 15 * 60 + svc.settings.LATE_SWEEP_SECONDS)
    assert run_rollup(svc, "backstop").roll["late"]["swept"] is True
    assert len(queries) > quiet


def test_bill_from_consumes_earlier_buckets(svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
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
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, n=10))
    clock.set(T0 + 2 * H + 10)
    send_ticks(svc, hour_of_ticks("b", "leg", T0 + H, n=20))
    clock.set(T0 + 2 * H + 900)
    run_rollup(svc, "shadow")  # both hours rolled in shadow
    assert {r.state for r in rows(svc).values()} == {"shadow"}
    result = run_rollup(live(svc, BILL_FROM=str(T0 + H)), "armed").body()
    assert result["roll"]["promoted"] == 1
    assert dict(fake.totals) == {("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("400")}
    assert rows(svc)[f"leg:{T0}:sandbox_compute_sandbox_1gb"].state == "shadow"  # before BILL_FROM: never billed


class CrashOnce(DynamoStore):
    """Fails the first call of one method, as a Lambda killed at that point would."""

    def __init__(self, base: DynamoStore, method: str) -> None:
        super().__init__(base.client, base.samples_table.rsplit("-", 1)[0], base.retention_seconds)
        self.method = method
        self.crashed = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name == object.__getattribute__(self, "method") and not object.__getattribute__(self, "crashed"):

            def boom(*args: Any, **kwargs: Any) -> Any:
                object.__setattr__(self, "crashed", True)
                raise RuntimeError(f"crash in {name}")

            return boom
        return attr


@pytest.mark.parametrize(
    "method",
    [
        "save_aggregates",
        "create_outbox_rows",
        "mark_bucket_rolled",
        "advance_cursor",
        "transition",
        "commit_late_chunk",
        "save_late_sweep",
        "release_lease",
    ],
)
def test_crash_at_any_step_then_rerun_bills_exactly_once(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe, method: str
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=30))
    clock.set(T0 + H + 900)
    armed = live(svc)
    run_rollup(armed, "warm")  # a rolled bucket for the late path to use
    send_ticks(armed, [tick("late", "leg", iso(T0 + 3000))])
    clock.set(T0 + 2 * H + 10)
    send_ticks(armed, hour_of_ticks("n", "uni", T0 + H, n=30))
    clock.set(T0 + 2 * H + 900)
    crashing = Services(armed.settings, CrashOnce(svc.store, method), svc.archive, svc.clock, armed.extras)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        run_rollup(crashing, "crash")
    clock.advance(armed.settings.LEASE_SECONDS)  # a crashed run's lease lapses
    run_rollup(armed, "rerun")
    run_rollup(armed, "again")
    assert dict(fake.totals) == {
        ("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("620"),
        ("cus_uni", "sandbox_compute_sandbox_overage"): Decimal("600"),
    }


def test_concurrent_run_is_skipped_by_the_lease(svc: Services, clock: FixedClock, orgs: None) -> None:
    assert svc.store.acquire_lease("rollup", "other-run", svc.now(), 300)
    result = run_rollup(svc, "test").body()
    assert result["skipped"] == "another rollup run holds the lease" and result["roll"] == {}
    clock.advance(301)
    assert "skipped" not in run_rollup(svc, "test").body()


def test_two_runs_racing_without_the_lease_still_bill_once(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    import threading

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=50) + hour_of_ticks("u", "uni", T0, n=50))
    clock.set(T0 + H + 900)
    armed = live(svc)
    fake.latency = 0.02

    class NoLease(DynamoStore):
        def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool:
            return True

    racer = Services(
        armed.settings,
        NoLease(
            svc.store.client,
            svc.store.samples_table.rsplit("-", 1)[0],  # type: ignore[attr-defined]
            svc.store.retention_seconds,
        ),
        svc.archive,
        svc.clock,
        armed.extras,
    )  # type: ignore[attr-defined]
    threads = [threading.Thread(target=run_rollup, args=(racer, f"r{i}")) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_rollup(armed, "settle")
    assert dict(fake.totals) == {
        ("cus_leg", "sandbox_compute_sandbox_1gb"): Decimal("1000"),
        ("cus_uni", "sandbox_compute_sandbox_overage"): Decimal("1000"),
    }


def test_accepted_but_answer_lost_is_not_billed_twice(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
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
    assert rows(svc)[f"leg:{T0}:sandbox_compute_sandbox_1gb"].state == "sent"


def test_rows_wait_for_a_customer_and_old_rows_become_unbillable(
    svc: Services, clock: FixedClock, fake: FakeStripe
) -> None:
    from chalicelib.core.outbox import OutboxRow

    svc.extras["stripe"] = fake
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
    assert rows(svc)[f"nocus:{old}:sandbox_compute_sandbox_1gb"].state == "unbillable"
    assert fake.calls == 1


def test_rejected_row_is_failed_not_retried_forever(
    svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe
) -> None:
    from chalicelib.core.meter_events import Outcome

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    fake.faults = [Outcome.REJECTED]
    assert run_rollup(live(svc), "test").body()["send"]["failed"] == 1
    assert run_rollup(live(svc), "test").body()["send"]["calls"] == 0
    assert rows(svc)[f"leg:{T0}:sandbox_compute_sandbox_1gb"].state == "failed"


def test_rate_limit_is_waited_out(svc: Services, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    from chalicelib.core.meter_events import Outcome

    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    fake.faults = [Outcome.RATE_LIMITED, Outcome.RATE_LIMITED]
    send = run_rollup(live(svc), "test").body()["send"]
    assert (send["rateLimited"], send["sent"], send["calls"]) == (2, 1, 3)


def test_sending_is_concurrent_but_never_twice_at_once_per_customer_meter(
    svc: Services, clock: FixedClock, fake: FakeStripe
) -> None:
    svc.extras["stripe"] = fake
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


def test_rollup_runs_only_in_the_home_region(svc: Services, clock: FixedClock, orgs: None) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=10))
    clock.set(T0 + H + 900)
    away = Services(load_settings(BASE_ENV | {"HOME_REGION": "false"}), svc.store, svc.archive, svc.clock)
    assert "home region" in run_rollup(away, "test").body()["skipped"]
    assert svc.store.bucket_state(T0) is None


def parity_of(svc: Services, start: int, end: int) -> dict[str, float]:
    from chalicelib.services.parity import Window, usage_parity

    body = usage_parity(svc.store, svc.settings, Window(start, end), svc.now())
    return {o["org_id"]: o["gb_seconds"] for o in body["orgs"]}


def test_parity_counts_a_backlog_delivered_after_its_hour_closed_before_and_after_the_sweep(
    svc: Services, clock: FixedClock, orgs: None
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("u", "uni", T0, 2048, n=30))  # on time: 30 x 20 s x 2 GB
    clock.set(T0 + H + 900)
    run_rollup(svc, "test")  # the hour is settled and rolled without "leg"
    send_ticks(svc, hour_of_ticks("l", "leg", T0, 1024, n=180))  # a cell's whole hour, delivered late
    expected = {"leg": 3600.0, "uni": 1200.0}
    assert parity_of(svc, T0, T0 + H) == expected, "before any sweep"
    run_rollup(svc, "test")  # sweeps and bills the stragglers; the signal is not yet settled
    assert parity_of(svc, T0, T0 + H) == expected, "after the sweep"
    clock.set(T0 + H + 1800)
    run_rollup(svc, "test")  # a later sweep marks the signal swept: the cheap path is back
    signal = svc.store.late_signal()
    assert signal.swept_version == signal.version
    assert parity_of(svc, T0, T0 + H) == expected, "from the aggregates, stragglers folded in"


def test_parity_of_a_mixed_partial_window_counts_late_and_on_time_samples(
    svc: Services, clock: FixedClock, orgs: None
) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("a", "leg", T0, 1024, n=90))  # [T0, T0+1800) on time
    clock.set(T0 + 2 * H + 900)
    run_rollup(svc, "test")
    send_ticks(svc, [tick(f"b{i}", "leg", iso(T0 + 1800 + 20 * (i + 1))) for i in range(90)])  # late
    send_ticks(svc, hour_of_ticks("c", "leg", T0 + H, 1024, n=45))  # next hour, late too
    # [T0 + 900, T0 + H + 450): 45 + 90 on-time/late ticks of the first hour, 22.5 ticks of the second.
    assert parity_of(svc, T0 + 900, T0 + H + 450) == {"leg": (45 + 90) * 20.0 + 450.0}
    run_rollup(svc, "test")
    assert parity_of(svc, T0 + 900, T0 + H + 450) == {"leg": (45 + 90) * 20.0 + 450.0}
