"""What the edge does with what cells report (CONTRACT section 8): a parity report or a status, once the
route has checked its signature and shape, is judged here, stored, counted and logged; and read back."""

from __future__ import annotations

from dataclasses import asdict

from chalicelib.core.cell_reports import CellStatus, ParityReport, drift_exceeds
from chalicelib.core.telemetry import parity_points
from chalicelib.observability import logger, publish
from chalicelib.ports import CellStore


class InconsistentReport(ValueError):
    """The report contradicts itself (answered 400): no retry of the same body can be stored."""


def receive_parity_report(cells: CellStore, report: ParityReport, worker_env: str) -> bool:
    """Store (or replace) a cell's report of one window; False if a newer-signed one is stored."""
    over = drift_exceeds(report)
    if report.clean and over:
        # A report that calls itself clean while listing drift above its own tolerance is a cell bug.
        raise InconsistentReport(f"report says clean but org {over[0].org_id} drifts {over[0].drift} "
                                 f"above tolerance {report.tolerance}")
    stored = cells.put_parity_report(report)
    publish(parity_points(report), worker_env)
    logger.info(
        "parity_report_received",
        extra={"cell_id": report.cell_id, "window_from": report.window_from, "window_to": report.window_to,
               "clean": report.clean, "max_drift": str(report.max_drift), "orgs": len(report.orgs),
               "stored": stored},
    )
    return stored


def receive_cell_status(cells: CellStore, status: CellStatus) -> bool:
    """Store a cell's status; False if a newer-signed one is stored (a late re-delivery changes nothing)."""
    stored = cells.put_cell_status(status)
    logger.info("cell_status_received", extra=asdict(status) | {"stored": stored})
    return stored


def parity_reports(cells: CellStore, cell_id: str, window_from: int, window_to: int) -> list[ParityReport]:
    return cells.parity_reports(cell_id, window_from, window_to)


def cell_statuses(cells: CellStore) -> list[CellStatus]:
    """Every cell's last status, by cell id."""
    return sorted(cells.cell_statuses(), key=lambda s: s.cell_id)
