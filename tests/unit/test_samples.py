from __future__ import annotations

import zlib
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.envelopes import Envelope, Tick, UsageTick
from chalicelib.core.samples import SAMPLE_SHARDS, late_cutoff, samples_from_tick, shard_of
from tests.conftest import T0, iso, tick


def make(ts: float, interval: str) -> Tick:
    env = Envelope.model_validate(tick("ev", "org", iso(ts)))
    return Tick(env, UsageTick(memory_mb=1024, interval_s=Decimal(interval)), env.ts)


def test_a_tick_across_an_hour_is_split_at_the_boundary_with_the_events_key() -> None:
    t = make(T0 + 3605, "10")  # covers [T0 + 3595, T0 + 3605)
    a, b = samples_from_tick(t, "org", 3600, 100, 0)
    assert (a.bucket_start, a.start, a.end, a.seconds) == (T0, T0 + 3595, T0 + 3600, Decimal("5.000000"))
    assert (b.bucket_start, b.start, b.end, b.seconds) == (T0 + 3600, T0 + 3600, T0 + 3605, Decimal("5.000000"))
    # Both pieces keep the event id as their key: a re-sent tick overwrites, never adds.
    assert a.event_id == b.event_id == "ev" and a.org_id == "org" and a.memory_mb == 1024
    assert (a.expires_at, b.expires_at) == (T0 + 3600 + 100, T0 + 7200 + 100)
    assert not a.late and not b.late


def test_late_flag_only_for_buckets_that_may_be_rolled() -> None:
    t = make(T0 + 3605, "10")
    [a, b] = samples_from_tick(t, "org", 3600, 100, late_after=T0 + 3600)
    assert a.late and not b.late


@given(st.text(min_size=1, max_size=40))
def test_shards_are_in_range(event_id: str) -> None:
    assert 0 <= shard_of(event_id) < SAMPLE_SHARDS


def test_shards_do_not_depend_on_the_process() -> None:
    # crc32 values fixed here: Python's salted str hash would change them from one process to the next.
    assert [shard_of(e) for e in ("ev-1", "ev-2", "tick-0001")] == [
        zlib.crc32(e.encode()) % SAMPLE_SHARDS for e in ("ev-1", "ev-2", "tick-0001")
    ]
    assert len({shard_of(f"ev-{i}") for i in range(1000)}) == SAMPLE_SHARDS


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_late_cutoff_protects_every_write_before_the_read(now: int, b_hours: int) -> None:
    width, grace, margin = 3600, 600, 120
    b = (b_hours % 100_000) * width
    not_late = b >= late_cutoff(now, width, grace, margin)
    if not_late:
        # Such a write started more than `margin` seconds before the bucket can be read.
        assert now + margin <= b + width + grace
