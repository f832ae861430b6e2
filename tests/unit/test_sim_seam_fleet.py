"""The cutover run's schedule never posts /run while the operator restarts the app (sim/seam_fleet.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sim.api import Answer
from sim.seam_fleet import SeamLoop


@dataclass
class RecordingEdge:
    fleet: SeamLoop | None = None
    under_deploy_lock: list[bool] = field(default_factory=list)

    def post(self, path: str, body: Any) -> Answer:
        assert self.fleet is not None and path == "/run"
        self.under_deploy_lock.append(self.fleet.deploying.locked())
        return Answer(200, {"roll": {}})


def test_each_post_run_holds_the_lock_the_arm_takes() -> None:
    # A run killed by `arm`'s restart of chalice local would hold the rollup lease for 360 s: the schedule
    # and the arm share one lock, so the restart waits for a running rollup and the schedule for the restart.
    edge = RecordingEdge()
    fleet = SeamLoop(cells={}, edge=edge, bucket=10, grace=2, log=logging.getLogger("test"))  # type: ignore[arg-type]
    edge.fleet = fleet
    fleet.rolled_through = 100
    fleet.rollup_due(200 * 1_000_000)
    assert edge.under_deploy_lock == [True]
    assert not fleet.deploying.locked()  # and released after
    assert fleet.rolled_through == 190


def test_a_run_that_left_buckets_with_the_workers_is_followed_a_second_later_until_none_waits() -> None:
    # The fan-out: a run hands the closed bucket to the workers and sends only what is rolled; the next run
    # sends the bucket's rows, so it comes a second later, not a bucket later, while any bucket waits.
    answers = [{"roll": {"waiting": [180]}}, {"roll": {"waiting": [], "late": {"waiting": 1}}},
               {"roll": {"waiting": []}}]
    posted: list[int] = []

    @dataclass
    class Edge:
        def post(self, path: str, body: Any) -> Answer:
            posted.append(len(posted))
            return Answer(200, answers[len(posted) - 1])

    us = 1_000_000
    fleet = SeamLoop(cells={}, edge=Edge(), bucket=10, grace=2, log=logging.getLogger("test"))  # type: ignore[arg-type]
    fleet.rolled_through = 180
    fleet.rollup_due(192 * us + us // 2)  # bucket 180 closed: handed to the workers
    fleet.rollup_due(193 * us)  # less than a second later: nothing
    assert len(posted) == 1 and fleet.workers_busy and not fleet.rollup_idle(180, timeout_s=0.01)
    fleet.rollup_due(193 * us + us // 2)  # the workers' bucket: a run again, a stale straggler slot still waits
    fleet.rollup_due(194 * us + us // 2)
    assert len(posted) == 3 and not fleet.workers_busy and fleet.rollup_idle(180, timeout_s=0.01)
    fleet.rollup_due(196 * us)  # nothing waits and the next bucket is not closed: no run
    assert len(posted) == 3 and fleet.rolled_through == 190


@dataclass
class KitCell:
    """A cell as the fleet's sandbox operations see it: the kit's store and ticker (in memory)."""

    store: Any
    cell: Any


def test_the_ledger_records_when_a_change_took_effect_not_when_it_was_scheduled() -> None:
    """On a busy machine an action runs after the cell has ticked past its scheduled time: the truth follows the
    kit's effective time, so the ledger's segments and the cell's ticks cover exactly the same time."""
    from types import SimpleNamespace

    from cellkit.adapters.clock import ManualClock
    from cellkit.adapters.memory import MemoryStore
    from cellkit.services.ticker import Ticker

    us, t0 = 1_000_000, 1795564800 * 1_000_000
    store, clock = MemoryStore(), ManualClock(t0)
    ticker = Ticker(store, "cell-a", "w1", clock, logging.getLogger("test"))
    fleet = SeamLoop(cells={"cell-a": KitCell(store, SimpleNamespace(ticker=ticker))}, edge=None,  # type: ignore[dict-item,arg-type]
                  bucket=10, grace=2, log=logging.getLogger("test"))
    ticker.start("s1", "o1", "pro", 1024, 1, t0)
    fleet.ledger.opened("s1", "o1", 1024, t0)
    clock.set(t0 + 20 * us)
    ticker.tick()  # the cell's step ran first ...
    fleet.resize("cell-a", "s1", 4096, t0 + 15 * us)  # ... and the resize scheduled at +15 s came after it
    fleet.stop_all(t0 + 40 * us)
    assert [(s.memory_mb, s.start_us - t0, s.end_us - t0) for s in fleet.ledger.segments] == [
        (1024, 0, 20 * us), (4096, 20 * us, 40 * us)]
    ticks = [json.loads(i.body)["payload"] for i in store.spool_head(10)]
    assert [(p["memory_mb"], p["interval_s"]) for p in ticks] == [(1024, 20.0), (4096, 20.0)]
    assert fleet.ledger.until(t0 + 30 * us) == t0 + 40 * us and fleet.ledger.until(t0 + 50 * us) == t0 + 50 * us
