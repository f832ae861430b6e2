"""Pure planning of the rollup: meter values, bucket rows, straggler chunks, closed buckets."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.aggregation import OrgAggregate, aggregate
from chalicelib.core.late import LateSignal, after_sweep, late_sweep_due
from chalicelib.core.metering import LATE_CHUNK, buckets_to_roll, meter_values, plan_bucket, plan_late
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


def test_late_chunks_fit_a_transaction_and_keep_every_sample() -> None:
    samples = [sample(i) for i in range(200)] + [sample(i, mb=4096) for i in range(200, 210)]
    chunks, unknown = plan_late(samples, {"o": Org("o", plan="pro")}, LIVE, "r", 0)
    assert unknown == []
    assert sum(len(c.event_ids) for c in chunks) == 210
    assert all(len(c.event_ids) + len(c.rows) + 1 <= 100 and len(c.event_ids) <= LATE_CHUNK for c in chunks)
    total = sum((r.value for c in chunks for r in c.rows), Decimal(0))
    assert total == Decimal(210 * 20)
    assert len({r.id for c in chunks for r in c.rows}) == sum(len(c.rows) for c in chunks)


def test_late_delta_identifier_is_deterministic() -> None:
    a, _ = plan_late([sample(1), sample(2)], {}, LIVE, "r1", 0)
    b, _ = plan_late([sample(2), sample(1)], {}, LIVE, "r2", 5)
    assert [r.id for r in a[0].rows] == [r.id for r in b[0].rows]
    assert a[0].rows[0].id.startswith("o:7200:sandbox_compute_sandbox_1gb:late:")


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


SETTLE, INTERVAL = 180, 3600


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2000)), min_size=1, max_size=30))
def test_a_version_is_swept_only_by_a_sweep_settle_seconds_after_it_was_first_seen(
    steps: list[tuple[int, int]],
) -> None:
    """Runs observe (version bumps, seconds since the previous run); complete sweeps update the signal."""
    signal, now, version = LateSignal(), 0, 0
    first_seen: dict[int, int] = {}
    for bumps, gap in steps:
        version += bumps
        now += gap
        signal = LateSignal(version, signal.seen_version, signal.seen_at, signal.swept_version, signal.swept_at)
        first_seen.setdefault(version, now)
        if not late_sweep_due(signal, now, INTERVAL):
            # Skipping is only ever right for a version a settled sweep covered, recently.
            assert signal.swept_version == version and now - signal.swept_at < INTERVAL
            continue
        signal = after_sweep(signal, now, SETTLE)
        if signal.swept_version == version:
            assert now - first_seen[version] >= SETTLE


def test_quiet_signal_is_skipped_until_the_backstop() -> None:
    seen = after_sweep(LateSignal(version=4), now=1000, settle=SETTLE)
    assert (seen.seen_version, seen.swept_version) == (4, None) and late_sweep_due(seen, 1900, INTERVAL)
    swept = after_sweep(seen, now=1900, settle=SETTLE)
    assert swept.swept_version == 4 and swept.swept_at == 1900
    assert not late_sweep_due(swept, 1900 + INTERVAL - 1, INTERVAL)
    assert late_sweep_due(swept, 1900 + INTERVAL, INTERVAL)
    bumped = LateSignal(5, swept.seen_version, swept.seen_at, swept.swept_version, swept.swept_at)
    assert late_sweep_due(bumped, 1901, INTERVAL)
