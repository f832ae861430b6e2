"""After every scheduled rollup: gather what an operator watches (telemetry.py) and publish it.

Best effort by design: a failed read here is logged and the run's own answer
stands (billing must never wait on its telemetry).
"""

from __future__ import annotations

from typing import Any, Protocol

from chalicelib.core.telemetry import (
    Point,
    expected_parity_window,
    missing_report_points,
    outbox_age_point,
    rollup_points,
)
from chalicelib.observability import logger, publish
from chalicelib.ports import CellStore, SeamReader, StoreUnavailable
from chalicelib.settings import Settings


class MetricsDeps(Protocol):
    """What the operator's metrics read: cells and their reports, the outbox's oldest pending bucket."""

    settings: Settings

    def now(self) -> int: ...

    def cells(self) -> CellStore: ...

    def seam(self) -> SeamReader: ...


def after_rollup(svc: MetricsDeps, run: dict[str, Any]) -> list[Point]:
    points = rollup_points(run)
    if not run.get("skipped"):
        try:
            points += state_points(svc)
        except StoreUnavailable as exc:
            logger.warning("operator_metrics_incomplete", extra={"run_id": run.get("runId"), "error": str(exc)})
        except Exception as exc:  # the run is done: a telemetry bug must not fail (and so re-run) it
            logger.exception("operator_metrics_failed", extra={"run_id": run.get("runId"), "error": str(exc)})
    publish(points, svc.settings.WORKER_ENV)
    return points


def state_points(svc: MetricsDeps) -> list[Point]:
    now = svc.now()
    oldest = svc.seam().oldest_pending_bucket_end()
    window_from, window_to = expected_parity_window(now)
    cells = svc.cells()
    present = {c.cell_id: bool(cells.parity_reports(c.cell_id, window_from, window_to))
               for c in cells.cell_statuses()}
    return [outbox_age_point(oldest, now), *missing_report_points(present)]
