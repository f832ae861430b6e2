"""Pure planning of the rollup: meter values, bucket rows, straggler chunks, closed buckets."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.aggregation import OrgAggregate, aggregate, aggregate_late, combine_by_bucket
from chalicelib.core.late import slot_closed, slot_of
from chalicelib.core.metering import buckets_to_roll, meter_values, plan_bucket, plan_late_slot
from chalicelib.core.money import exact
from chalicelib.core.orgs import Org
from chalicelib.core.pricing import OVERAGE_METER, TIERS
from chalicelib.core.samples import StoredSample
from chalicelib.settings import load_settings

SHADOW = load_settings({})
LIVE = load_settings({"SHADOW": "false", "BILL_FROM": "7200"})
sizes = st.sampled_from([0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536])
seconds = st.decimals(min_value=0, max_value=100_000, places=6, allow_nan=False, allow_infinity=False)


@given(st.dictionaries(sizes, seconds, max_size=9))
def test_legacy_bills_every_known_second_and_reports_the_rest(by_mb: dict[int, Decimal]) -> None:
    mv = meter_values(by_mb, "legacy")
    billed = sum(mv.values.values(), Decimal(0))
    assert billed + sum(mv.unknown.values(), Decimal(0)) == sum(by_mb.values(), Decimal(0))
    assert set(mv.unknown) == {mb for mb in by_mb if mb not in TIERS}
    assert all(v > 0 for v in mv.values.values())


@given(st.dictionaries(sizes, seconds, max_size=9))
def test_unified_bills_gb_seconds_of_every_size_on_overage(by_mb: dict[int, Decimal]) -> None:
    mv = meter_values(by_mb, "unified")
    # Every size, with or without a tier (512 and 2048 MB included): the overage meter is flat per GB-second.
    expected = exact(sum((Decimal(mb) * s / 1024 for mb, s in by_mb.items()), Decimal(0)))
    assert set(mv.values) <= {OVERAGE_METER}
    assert mv.values.get(OVERAGE_METER, Decimal(0)) == expected
    # Only size 0 (workers too old to send memory_mb) cannot be billed, and it is reported.
    assert set(mv.unknown) == ({0} if 0 in by_mb else set())


def test_unified_2048_mb_is_billed_and_legacy_2048_mb_is_reported() -> None:
    assert meter_values({2048: Decimal(30)}, "unified").values == {OVERAGE_METER: Decimal("60.000000")}
    legacy = meter_values({2048: Decimal(30)}, "legacy")
    assert legacy.values == {} and legacy.unknown == {2048: Decimal(30)}


def test_plan_bucket_states_follow_shadow_and_bill_from() -> None:
    agg = [OrgAggregate("o", 3600, {1024: Decimal(10)}, 1)]
    orgs = {"o": Org("o", plan="pro")}
    assert [r.state for r in plan_bucket(3600, agg, orgs, SHADOW, "r", 0).rows] == ["shadow"]
    consumed = plan_bucket(3600, agg, orgs, LIVE, "r", 0)
    assert consumed.rows == [] and consumed.consumed
    [row] = plan_bucket(7200, [OrgAggregate("o", 7200, {1024: Decimal(10)}, 1)], orgs, LIVE, "r", 0).rows
    assert (row.id, row.state, row.bucket_end) == ("o:7200:sandbox_compute_sandbox_1gb", "pending", 10800)


def sample(i: int, org: str = "o", bucket: int = 7200, mb: int = 1024, secs: str = "20") -> StoredSample:
    return StoredSample(
        f"e{i:04d}", org, mb, bucket, Decimal(bucket), Decimal(bucket) + Decimal(secs), Decimal(secs), True
    )


def test_a_late_slot_plans_one_delta_per_org_bucket_and_meter_and_keeps_every_second() -> None:
    samples = [sample(i) for i in range(200)] + [sample(i, mb=4096) for i in range(200, 210)]
    samples += [sample(i, bucket=10800, org="u") for i in range(210, 215)]
    aggs = aggregate_late(samples)
    assert [(a.bucket_start, a.org_id, a.samples) for a in aggs] == [(7200, "o", 210), (10800, "u", 5)]
    plan = plan_late_slot(20_000, aggs, {"o": Org("o", plan="pro"), "u": Org("u", billing_mode="unified")}, LIVE,
                          "r", 0)
    assert plan.unknown == []
    assert [(r.id, r.value, r.kind, r.samples) for r in plan.rows] == [
        ("o:7200:sandbox_compute_sandbox_1gb:late:20000", Decimal(4000), "delta", 210),
        ("o:7200:sandbox_compute_sandbox_4gb:late:20000", Decimal(200), "delta", 210),
        ("u:10800:sandbox_compute_sandbox_overage:late:20000", Decimal(100), "delta", 5),
    ]


def test_a_late_slot_before_bill_from_plans_no_row_and_an_unknown_size_is_reported() -> None:
    aggs = aggregate_late([sample(1, bucket=3600), sample(2, mb=512)])
    plan = plan_late_slot(20_000, aggs, {}, LIVE, "r", 0)
    assert plan.rows == [] and [(u["bucket_start"], u["memory_mb"], u["late"]) for u in plan.unknown] == [
        (7200, 512, True)]
    again = plan_late_slot(20_000, list(reversed(aggs)), {}, LIVE, "r2", 5)
    assert [r.id for r in again.rows] == [r.id for r in plan.rows], "named by the slot, not by the run"


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([1024, 4096]), st.integers(1, 40)), max_size=40),
       st.integers(1, 4))
def test_late_partials_combine_to_the_slot_s_aggregate(parts: list[tuple[int, int, int]], shards: int) -> None:
    samples = [sample(i, bucket=7200 + 3600 * (b % 2), org=f"o{b}", mb=mb, secs=str(secs))
               for i, (b, mb, secs) in enumerate(parts)]
    partials = [a for k in range(shards) for a in aggregate_late(s for i, s in enumerate(samples) if i % shards == k)]
    assert combine_by_bucket(partials) == aggregate_late(samples)


def test_a_slot_closes_after_its_end_the_margin_and_the_index_lag() -> None:
    assert slot_of(1234, 300) == 1200
    assert not slot_closed(1200, 300, 180, 1679) and slot_closed(1200, 300, 180, 1680)


def test_aggregate_skips_late_unless_asked() -> None:
    on_time = StoredSample("x", "o", 1024, 0, Decimal(0), Decimal(5), Decimal(5), False)
    late = StoredSample("y", "o", 1024, 0, Decimal(5), Decimal(9), Decimal(4), True)
    assert aggregate(0, [on_time, late])[0].seconds_by_memory == {1024: Decimal(5)}
    assert aggregate(0, [on_time, late], include_late=True)[0].samples == 2


def test_buckets_to_roll_walks_from_the_cursor_to_the_last_closed() -> None:
    s = load_settings({"ROLLUP_LOOKBACK_BUCKETS": "2"})
    now = 10 * 3600 + 600
    assert buckets_to_roll(None, now, s) == [8 * 3600, 9 * 3600]
    assert buckets_to_roll(5 * 3600, now, s) == [5 * 3600, 6 * 3600, 7 * 3600, 8 * 3600, 9 * 3600]
    assert buckets_to_roll(10 * 3600, now, s) == []
