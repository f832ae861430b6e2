"""The rollup's scenarios and their helpers, shared by the in-memory and the moto runs.

tests/services/test_rollup_service.py runs every scenario fast on the in-memory store;
tests/integration/test_rollup.py runs some of the same ones end to end on DynamoDB (moto).
Written once here, the two runs cannot drift apart. Loaded as a plugin by tests/conftest.py,
so the fixtures reach both and pytest rewrites the asserts below.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.late import slot_of
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.parity import Window, usage_parity
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import load_settings
from tests.conftest import BASE_ENV, T0, iso, tick
from tests.fakes.stripe import FakeStripe

H = 3600


def live(svc: Container, **env: str) -> Container:
    settings = load_settings(BASE_ENV | {"SHADOW": "false"} | env)
    return Container(settings, svc.store, svc.archive, svc.clock, meter_gateway=svc.meter_gateway)


def send_ticks(svc: Container, ticks: list[dict[str, Any]]) -> None:
    ingest_batch(ticks, "cell-a", svc.store, svc.settings, svc.now())


def hour_of_ticks(prefix: str, org: str, hour_start: int, memory_mb: int = 1024, n: int = 180,
                  every: int = 20) -> list[dict[str, Any]]:
    return [tick(f"{prefix}{i}", org, iso(hour_start + every * (i + 1)), interval_s=every, memory_mb=memory_mb)
            for i in range(n)]


def past_late_slot(svc: Container, clock: FixedClock) -> None:
    """The clock just past the close of the late slot it is in (every straggler written so far is then in a
    closed slot: the next run sweeps them)."""
    s = svc.settings
    clock.set(slot_of(clock.now(), s.LATE_SLOT_SECONDS) + s.LATE_SLOT_SECONDS + s.LATE_MARGIN_SECONDS
              + s.LATE_INDEX_LAG_SECONDS)


def parity_of(svc: Container, start: int, end: int) -> dict[str, float]:
    body = usage_parity(svc.store, svc.settings, Window(start, end), svc.now())
    return {o["org_id"]: o["gb_seconds"] for o in body["orgs"]}


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def orgs(svc: Container, fake: FakeStripe) -> None:
    """A legacy and a unified pro org, both with a Stripe customer, billed through `fake`."""
    svc.meter_gateway = fake
    svc.store.put_org(Org("leg", plan="pro", billing_mode="legacy", stripe_customer_id="cus_leg"))
    svc.store.put_org(Org("uni", plan="pro", billing_mode="unified", stripe_customer_id="cus_uni"))


def shadow_roll_writes_rows_and_sends_nothing(
    svc: Container, clock: FixedClock, fake: FakeStripe, rows: Callable[[], dict[str, OutboxRow]]
) -> None:
    """`rows` reads the outbox the way its store can: through the port, or from the table itself."""
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
    assert {r.id: (r.value, r.state) for r in rows().values()} == {
        f"leg:{T0}:sandbox_compute_sandbox_4gb": (Decimal("3580"), "shadow"),
        # 1800 s x 8 GB + 20 s x 2 GB
        f"uni:{T0}:sandbox_compute_sandbox_overage": (Decimal("14440"), "shadow"),
    }
    assert fake.calls == 0


def live_run_sends_once_and_replay_changes_nothing(svc: Container, clock: FixedClock, fake: FakeStripe) -> None:
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


def straggler_is_billed_as_a_delta_once(svc: Container, clock: FixedClock, fake: FakeStripe) -> None:
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("l", "leg", T0, n=100))
    clock.set(T0 + H + 900)
    armed = live(svc)
    run_rollup(armed, "test")
    late = [tick("late1", "leg", iso(T0 + 3000)), tick("late2", "leg", iso(T0 + 3020), memory_mb=4096)]
    send_ticks(armed, late)
    send_ticks(armed, late)  # the forwarder retries: still once
    assert run_rollup(armed, "test").body()["roll"]["late"]["slots"] == [], "the slot is still open"
    past_late_slot(svc, clock)
    result = run_rollup(armed, "test").body()
    assert result["roll"]["late"]["samples"] == 2 and result["roll"]["late"]["rows"] == 2
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_1gb")] == Decimal("2020")
    assert fake.totals[("cus_leg", "sandbox_compute_sandbox_4gb")] == Decimal("20")
    # Replays of the stragglers and of on-time ticks after the roll bill nothing more.
    send_ticks(armed, late + hour_of_ticks("l", "leg", T0, n=5))
    past_late_slot(svc, clock)
    after = run_rollup(armed, "test").body()
    assert after["roll"]["late"]["samples"] == 0 and after["send"]["calls"] == 0
    assert sum(fake.totals.values()) == Decimal("2040")


def concurrent_run_is_skipped_by_the_lease(svc: Container, clock: FixedClock) -> None:
    assert svc.store.acquire_lease("rollup", "other-run", svc.now(), 300)
    result = run_rollup(svc, "test").body()
    assert result["skipped"] == "another rollup run holds the lease" and result["roll"] == {}
    clock.advance(301)
    assert "skipped" not in run_rollup(svc, "test").body()


def parity_counts_a_backlog_delivered_after_its_hour_closed(svc: Container, clock: FixedClock) -> None:
    """Before any sweep, after one, and once a later sweep has folded the stragglers into the aggregates."""
    clock.set(T0 + H + 10)
    send_ticks(svc, hour_of_ticks("u", "uni", T0, 2048, n=30))  # on time: 30 x 20 s x 2 GB
    clock.set(T0 + H + 900)
    run_rollup(svc, "test")  # the hour is settled and rolled without "leg"
    send_ticks(svc, hour_of_ticks("l", "leg", T0, 1024, n=60, every=60))  # a cell's whole hour, delivered late
    expected = {"leg": 3600.0, "uni": 1200.0}
    assert parity_of(svc, T0, T0 + H) == expected, "before any sweep"
    run_rollup(svc, "test")  # their late slot is still open: nothing swept
    assert parity_of(svc, T0, T0 + H) == expected, "a run later, the slot open"
    past_late_slot(svc, clock)
    run_rollup(svc, "test")  # the slot closed: swept, its stragglers added into the aggregates
    assert [s.swept for s in svc.store.late_slots(0)] == [True]
    assert parity_of(svc, T0, T0 + H) == expected, "from the aggregates, stragglers added in"
