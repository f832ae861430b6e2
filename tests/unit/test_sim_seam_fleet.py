"""The cutover run's schedule never posts /run while the operator restarts the app (sim/seam_fleet.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sim.api import Answer
from sim.seam_fleet import Fleet


@dataclass
class RecordingEdge:
    fleet: Fleet | None = None
    under_deploy_lock: list[bool] = field(default_factory=list)

    def post(self, path: str, body: Any) -> Answer:
        assert self.fleet is not None and path == "/run"
        self.under_deploy_lock.append(self.fleet.deploying.locked())
        return Answer(200, {"roll": {}})


def test_each_post_run_holds_the_lock_the_arm_takes() -> None:
    # A run killed by `arm`'s restart of chalice local would hold the rollup lease for 360 s: the schedule
    # and the arm share one lock, so the restart waits for a running rollup and the schedule for the restart.
    edge = RecordingEdge()
    fleet = Fleet(cells={}, edge=edge, bucket=10, grace=2, log=logging.getLogger("test"))  # type: ignore[arg-type]
    edge.fleet = fleet
    fleet.rolled_through = 100
    fleet.rollup_due(200 * 1_000_000)
    assert edge.under_deploy_lock == [True]
    assert not fleet.deploying.locked()  # and released after
    assert fleet.rolled_through == 190
