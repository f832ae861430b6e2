from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.envelopes import Envelope, Tick, UsageTick
from chalicelib.samples import SAMPLE_SHARDS, late_cutoff, samples_from_tick, shard_of
from tests.conftest import T0, iso, tick


def make(ts: float, interval: str) -> Tick:
    env = Envelope.model_validate(tick("ev", "org", iso(ts)))
    return Tick(env, UsageTick(memory_mb=1024, interval_s=Decimal(interval)), env.ts)


def test_samples_are_deterministic_per_event() -> None:
    t = make(T0 + 3605, "10")
    assert samples_from_tick(t, "org", 3600, 100, 0) == samples_from_tick(t, "org", 3600, 100, 0)


def test_late_flag_only_for_buckets_that_may_be_rolled() -> None:
    t = make(T0 + 3605, "10")
    [a, b] = samples_from_tick(t, "org", 3600, 100, late_after=T0 + 3600)
    assert a.late and not b.late


@given(st.text(min_size=1, max_size=40))
def test_shards_are_stable_and_in_range(event_id: str) -> None:
    assert 0 <= shard_of(event_id) < SAMPLE_SHARDS
    assert shard_of(event_id) == shard_of(event_id)


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_late_cutoff_protects_every_write_before_the_read(now: int, b_hours: int) -> None:
    width, grace, margin = 3600, 600, 120
    b = (b_hours % 100_000) * width
    not_late = b >= late_cutoff(now, width, grace, margin)
    if not_late:
        # Such a write started more than `margin` seconds before the bucket can be read.
        assert now + margin <= b + width + grace
