"""Properties of the pure core, over generated inputs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cellkit.core.ticker import Sandbox, advanced, plan_tick
from cellkit.core.usage import ScaleEvent, clip_us

H_US = 3600 * 1_000_000
T0_US = 1795564800 * 1_000_000


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 10 * H_US), length=st.integers(0, 5 * H_US), now_extra=st.integers(0, H_US),
       is_open=st.booleans())
def test_hourly_clips_partition_an_interval(start: int, length: int, now_extra: int, is_open: bool) -> None:
    """Summed over consecutive hours, the clipped parts are the whole interval: nothing twice, nothing lost."""
    end = start + length
    now = end + now_extra if is_open else 0
    ev = ScaleEvent("e", "s", "o", 1024, 1, T0_US + start, None if is_open else T0_US + end)
    stop = (T0_US + now) if is_open else (T0_US + end)
    hours = range(0, 17)
    total = sum(clip_us(ev, T0_US + h * H_US, T0_US + (h + 1) * H_US, stop) for h in hours)
    assert total == stop - (T0_US + start)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.integers(1, 2 * H_US), min_size=1, max_size=60))
def test_ticks_tile_time_whatever_the_gaps(steps: list[int]) -> None:
    """Covered + skipped time is the elapsed time exactly; no tick exceeds the one-hour cap."""
    sbx = Sandbox("s", "o", "pro", "w", 1024, 1, T0_US, T0_US)
    now = T0_US
    covered = skipped = 0
    for step in steps:
        now += step
        plan = plan_tick(sbx, now, "w")
        assert plan is not None and 0 < plan.interval_us <= H_US
        covered += plan.interval_us
        skipped += plan.skipped_us
        sbx = advanced(plan)
    assert covered + skipped == now - T0_US
    assert skipped == sum(max(0, s - H_US) for s in steps)
