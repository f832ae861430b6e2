"""The operator's status (CONTRACT 11): pure views of what the stage holds, for the page, its JSON twin
and `edge-billing status`. No I/O: services/status.py gathers the facts and hands them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.core.cell_reports import CellStatus, ParityReport, drift_exceeds

# A cell status older than this is not trusted (the cutover CLI's --stale-after default).
STALE_AFTER_SECONDS = 1800
# The grid shows at most this many settled buckets per cell: the whole 24 h soak at 3600 s buckets, the
# newest 48 at shorter ones (a day of 10 s buckets would be 8,640 columns).
GRID_BUCKETS = 48


@dataclass(frozen=True)
class ParityCell:
    """One (cell, settled bucket) of the soak window: clean, drifting, or missing (no report covers it)."""

    cell_id: str
    bucket_start: int
    missing: bool
    clean: bool = False
    max_drift: Decimal = Decimal(0)

    def body(self) -> dict[str, Any]:
        if self.missing:
            return {"cell_id": self.cell_id, "bucket_start": self.bucket_start, "missing": True}
        return {"cell_id": self.cell_id, "bucket_start": self.bucket_start, "clean": self.clean,
                "max_drift": str(self.max_drift)}


def grid_window(soak_start: int, soak_end: int, bucket: int) -> list[int]:
    """The settled buckets the grid shows: the soak window's newest GRID_BUCKETS."""
    first = max(soak_start, soak_end - GRID_BUCKETS * bucket)
    return list(range(first - first % bucket, soak_end, bucket))


def parity_grid(cell_ids: Sequence[str], reports: Mapping[str, Sequence[ParityReport]],
                buckets: Sequence[int], bucket: int) -> list[ParityCell]:
    """Per cell and bucket, what the reports covering that bucket say (a report may span many buckets)."""
    out: list[ParityCell] = []
    for cell_id in sorted(cell_ids):
        mine = reports.get(cell_id, ())
        for b in buckets:
            covering = [r for r in mine if r.window_from < b + bucket and r.window_to > b]
            if not covering:
                out.append(ParityCell(cell_id, b, missing=True))
                continue
            clean = all(r.clean and not drift_exceeds(r) for r in covering)
            out.append(ParityCell(cell_id, b, False, clean, max(r.max_drift for r in covering)))
    return out


def cell_view(c: CellStatus, now: int, stale_after: int = STALE_AFTER_SECONDS) -> dict[str, Any]:
    return {"cell_id": c.cell_id, "authority": c.authority, "billers_running": c.billers_running,
            "billed_through": c.billed_through, "pending_billable": c.pending_billable,
            "spool_depth": c.spool_depth, "reported_at": c.reported_at,
            "age_seconds": max(0, now - c.reported_at), "stale": now - c.reported_at > stale_after}


def rollup_view(cursor: int | None, bucket: int, now: int) -> dict[str, Any]:
    """The rollup's cursor is the next bucket to roll: the one before it is the last settled."""
    if cursor is None:
        return {"last_settled_bucket": None, "lag_seconds": None}
    last = cursor - bucket
    return {"last_settled_bucket": last, "lag_seconds": max(0, now - (last + bucket))}


def outbox_view(pending: int, failed: int, oldest_pending_bucket_end: int | None, now: int,
                capped: bool) -> dict[str, Any]:
    age = None if oldest_pending_bucket_end is None else max(0, now - oldest_pending_bucket_end)
    return {"pending": pending, "failed": failed, "oldest_pending_age_seconds": age, "capped": capped}
