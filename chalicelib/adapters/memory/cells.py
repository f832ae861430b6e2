"""In-memory CellStore: parity reports and cell status, the newer-signed write winning as in DynamoCells."""

from __future__ import annotations

import threading

from chalicelib.core.cell_reports import CellStatus, ParityReport
from chalicelib.ports import CellStore


class MemoryCells(CellStore):
    def __init__(self) -> None:
        self.reports: dict[tuple[str, int, int], ParityReport] = {}
        self.statuses: dict[str, CellStatus] = {}
        self._lock = threading.Lock()

    def put_parity_report(self, report: ParityReport) -> bool:
        key = (report.cell_id, report.window_from, report.window_to)
        with self._lock:
            stored = self.reports.get(key)
            if stored is not None and stored.signed_at > report.signed_at:
                return False
            self.reports[key] = report
            return True

    def parity_reports(self, cell_id: str, window_from: int, window_to: int) -> list[ParityReport]:
        with self._lock:
            found = [r for (c, f, _), r in self.reports.items() if c == cell_id and window_from <= f < window_to]
        return sorted(found, key=lambda r: (r.window_from, r.window_to))

    def put_cell_status(self, status: CellStatus) -> bool:
        with self._lock:
            stored = self.statuses.get(status.cell_id)
            if stored is not None and stored.signed_at > status.signed_at:
                return False
            self.statuses[status.cell_id] = status
            return True

    def cell_statuses(self) -> list[CellStatus]:
        with self._lock:
            return [self.statuses[c] for c in sorted(self.statuses)]
