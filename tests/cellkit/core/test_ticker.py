from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal

from cellkit.core.ticker import MAX_CATCHUP_US, Sandbox, advanced, plan_tick, tick_envelope
from cellkit.core.timeutil import rfc3339

T0_US = 1795564800 * 1_000_000


def sandbox(**kw: object) -> Sandbox:
    base = dict(sandbox_id="sbx-1", org_id="org-1", plan="pro", worker_id="w1", memory_mb=4096, cpu_count=2,
                started_us=T0_US, last_tick_us=T0_US)
    return Sandbox(**(base | kw))  # type: ignore[arg-type]


def test_ten_thousand_jittered_ticks_sum_to_the_running_time_to_the_microsecond() -> None:
    rng = random.Random(11)
    sbx, now = sandbox(), T0_US
    total = Decimal(0)
    for _ in range(10_000):
        now += 20_000_000 + rng.randint(-3_000_000, 3_000_000) + rng.randint(0, 999_999)
        plan = plan_tick(sbx, now, "w1")
        assert plan is not None
        env = json.loads(json.dumps(tick_envelope(plan, "cell-a")), parse_float=Decimal)
        # What the edge reads (JSON number parsed as Decimal) is exactly the microsecond interval.
        assert env["payload"]["interval_s"] == Decimal(plan.interval_us).scaleb(-6)
        total += env["payload"]["interval_s"]
        sbx = advanced(plan)
    assert total == Decimal(now - T0_US).scaleb(-6)
    # The seed's truncation to whole seconds would have lost about half a second per tick.
    assert total > Decimal(10_000 * 17)


def test_zombie_guard_only_the_owner_ticks() -> None:
    sbx = sandbox(worker_id="w2")
    assert plan_tick(sbx, T0_US + 20_000_000, "w1") is None
    assert plan_tick(sbx, T0_US + 20_000_000, "w2") is not None
    assert plan_tick(sandbox(status="stopped"), T0_US + 20_000_000, "w1") is None


def test_no_time_passed_no_tick() -> None:
    assert plan_tick(sandbox(), T0_US, "w1") is None
    assert plan_tick(sandbox(), T0_US - 1, "w1") is None


def test_catch_up_after_a_gap_is_capped_at_one_hour() -> None:
    gap = 3 * MAX_CATCHUP_US + 5
    plan = plan_tick(sandbox(), T0_US + gap, "w1")
    assert plan is not None
    assert plan.interval_us == MAX_CATCHUP_US
    assert plan.skipped_us == gap - MAX_CATCHUP_US
    short = plan_tick(sandbox(), T0_US + MAX_CATCHUP_US, "w1")
    assert short is not None and short.interval_us == MAX_CATCHUP_US and short.skipped_us == 0


def test_envelope_matches_the_contract() -> None:
    plan = plan_tick(sandbox(), T0_US + 20_123_456, "w1")
    assert plan is not None
    env = tick_envelope(plan, "cell-a")
    assert set(env) == {"id", "type", "sandbox_id", "org_id", "plan", "worker_id", "cell_id", "payload", "timestamp"}
    assert env["type"] == "usage_tick" and env["cell_id"] == "cell-a" and env["worker_id"] == "w1"
    assert env["payload"]["memory_mb"] == 4096 and env["payload"]["cpu_count"] == 2
    assert env["payload"]["interval_s"] == 20.123456
    assert parsed_us(env["timestamp"]) == T0_US + 20_123_456
    assert env["timestamp"] == rfc3339(T0_US + 20_123_456) == "2026-11-25T00:00:20.123456Z"
    assert env["id"] == f"cell-a:sbx-1:{T0_US + 20_123_456}"


def test_envelopes_pass_the_edge_validator() -> None:
    from chalicelib.core.envelopes import Tick, validate_one

    plan = plan_tick(sandbox(), T0_US + 20_000_001, "w1")
    assert plan is not None
    raw = json.loads(json.dumps(tick_envelope(plan, "cell-a")), parse_float=Decimal)
    tick = validate_one(raw, 3600, T0_US // 1_000_000 + 30, 86400)
    assert isinstance(tick, Tick)
    assert tick.start == Decimal(T0_US).scaleb(-6)


def parsed_us(text: str) -> int:
    """The envelope's timestamp read back, as the edge reads it (to exact microseconds)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
