from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from decimal import Decimal
from typing import Any

from cellkit.adapters.clock import ManualClock
from cellkit.ports import CellStore
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import T0_US, Captured

US = 1_000_000


def spooled(store: CellStore) -> list[dict[str, Any]]:
    return [json.loads(i.body, parse_float=Decimal) for i in store.spool_head(1_000_000)]


def test_ticks_tile_the_running_time_across_resize_and_stop(
    any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    ticker = Ticker(any_store, "cell-a", "w1", clock, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    rng = random.Random(3)
    for step in range(60):
        clock.advance_us(20 * US + rng.randint(0, 999_999))
        if step == 30:
            ticker.resize("s1", 4096, 2, clock.now_us() - 7 * US)
        ticker.tick()
    stop_at = clock.now_us() + 5 * US
    ticker.stop("s1", stop_at)
    clock.advance_us(40 * US)
    assert ticker.tick().ticked == 0  # a stopped sandbox never ticks again

    envs = spooled(any_store)
    assert len({e["id"] for e in envs}) == len(envs) == 62
    assert sum(e["payload"]["interval_s"] for e in envs) == Decimal(stop_at - T0_US).scaleb(-6)
    sizes = [e["payload"]["memory_mb"] for e in envs]
    assert sizes[:31] == [1024] * 31 and sizes[31:] == [4096] * 31
    # The resize ended an interval at the resize moment exactly.
    ends = [e["timestamp"] for e in envs]
    from cellkit.core.timeutil import rfc3339

    assert ends[30] == rfc3339(any_store.scale_events(0, 2**62)[1].started_us)
    events = any_store.scale_events(0, 2**62)
    assert [(e.memory_mb, e.ended_us is not None) for e in events] == [(1024, True), (4096, True)]
    assert events[0].ended_us == events[1].started_us and events[1].ended_us == stop_at


def test_zombie_worker_cannot_tick_a_moved_sandbox(
    any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    old = Ticker(any_store, "cell-a", "w1", clock, log[0])
    new = Ticker(any_store, "cell-a", "w2", clock, log[0])
    old.start("s1", "o1", "pro", 1024, 1, T0_US)
    clock.advance_us(20 * US)
    assert old.tick().ticked == 1
    old.move("s1", "w2")
    clock.advance_us(20 * US)
    assert old.tick().ticked == 0  # the migration source is a zombie now
    assert new.tick().ticked == 1
    envs = spooled(any_store)
    assert [e["worker_id"] for e in envs] == ["w1", "w2"]
    assert sum(e["payload"]["interval_s"] for e in envs) == Decimal(40)


def test_a_stale_read_loses_the_compare_and_set(
    any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    """Two tickers that both read the same cursor: only one tick is spooled for that interval."""
    ticker = Ticker(any_store, "cell-a", "w1", clock, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    clock.advance_us(20 * US)
    stale = any_store.sandbox("s1")
    assert stale is not None
    assert ticker.tick().ticked == 1
    with any_store.transaction() as tx:
        assert not tx.change_sandbox(stale, replace(stale, last_tick_us=clock.now_us()))
    assert any_store.spool_depth() == 1


def test_gap_capped_and_logged(any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]) -> None:
    ticker = Ticker(any_store, "cell-a", "w1", clock, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    clock.advance_us(5 * 3600 * US)
    run = ticker.tick()
    assert run.ticked == 1 and run.skipped_us == 4 * 3600 * US
    assert spooled(any_store)[0]["payload"]["interval_s"] == 3600
    (line,) = log[1].events("tick_gap_capped")
    assert line.sandbox_id == "s1" and line.org_id == "o1" and line.skipped_us == 4 * 3600 * US  # type: ignore[attr-defined]


def test_start_refuses_a_running_sandbox_and_lifecycle_needs_one(
    any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    import pytest

    from cellkit.services.ticker import SandboxAlreadyRunning, SandboxNotRunning

    ticker = Ticker(any_store, "cell-a", "w1", clock, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    with pytest.raises(SandboxAlreadyRunning):
        ticker.start("s1", "o1", "pro", 2048, 1, T0_US + US)
    ticker.stop("s1", T0_US + 10 * US)
    with pytest.raises(SandboxNotRunning):
        ticker.resize("s1", 2048, 1, T0_US + 20 * US)
    with pytest.raises(SandboxNotRunning):
        ticker.stop("missing", T0_US)
    ticker.start("s1", "o1", "pro", 2048, 1, T0_US + 30 * US)  # a stopped sandbox may start again
    assert [e.ended_us for e in any_store.scale_events(0, 2**62)] == [T0_US + 10 * US, None]


def test_a_lifecycle_time_before_the_cursor_is_clamped_logged_and_counted(
    any_store: CellStore, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    """One rule for ticks, scale events and the caller's ledger: max(requested, cursor), inside the transaction."""
    ticker = Ticker(any_store, "cell-a", "w1", clock, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    clock.advance_us(20 * US)
    ticker.tick()  # the cursor is at T0+20 s
    resized = ticker.resize("s1", 4096, 2, T0_US + 15 * US)
    assert (resized.at_us, resized.requested_us, resized.clamped_us) == (T0_US + 20 * US, T0_US + 15 * US, 5 * US)
    stopped = ticker.stop("s1", T0_US + 40 * US)
    assert stopped.clamped_us == 0 and ticker.clamped == 1
    (line,) = log[1].events("lifecycle_time_clamped")
    assert line.reason == "resized" and line.requested_us == T0_US + 15 * US  # type: ignore[attr-defined]
    assert line.at_us == T0_US + 20 * US  # type: ignore[attr-defined]
    events = any_store.scale_events(0, 2**62)
    assert [(e.memory_mb, e.started_us, e.ended_us) for e in events] == [
        (1024, T0_US, T0_US + 20 * US), (4096, T0_US + 20 * US, T0_US + 40 * US)]
    envs = spooled(any_store)
    assert [(e["payload"]["memory_mb"], e["payload"]["interval_s"]) for e in envs] == [(1024, 20), (4096, 20)]
    # A stopped sandbox restarts no earlier than it stopped: its scale events never overlap.
    restarted = ticker.start("s1", "o1", "pro", 1024, 1, T0_US + 30 * US)
    assert restarted.at_us == T0_US + 40 * US and ticker.clamped == 2


def test_no_time_given_reads_the_clock_inside_the_transaction(
    sqlite_store: Any, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    seen: list[bool] = []

    class Watching(ManualClock):
        def now_us(self) -> int:
            seen.append(sqlite_store._in_tx)
            return super().now_us()

    watched = Watching(T0_US)
    ticker = Ticker(sqlite_store, "cell-a", "w1", watched, log[0])
    ticker.start("s1", "o1", "pro", 1024, 1)
    watched.advance_us(10 * US)
    ticker.resize("s1", 2048, 1)
    ticker.move("s1", "w2")
    watched.advance_us(10 * US)
    assert ticker.stop("s1").at_us == T0_US + 20 * US
    assert seen == [True] * 4
    envs = spooled(sqlite_store)
    # The move ended the old owner's interval (none: no time had passed); the new owner's stop ticked the rest.
    assert [(e["worker_id"], e["payload"]["memory_mb"], e["payload"]["interval_s"]) for e in envs] == [
        ("w1", 1024, 10), ("w2", 2048, 10)]
