"""Rollback: which meter events the edge sent for a bucket a cell billed, and what to do with each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.outbox import OutboxRow

# Stripe cancels a meter event only within 24 h of receipt; keep a margin for the clock and the call.
ADJUST_WINDOW_SECONDS = 86400
ADJUST_MARGIN_SECONDS = 600


@dataclass(frozen=True)
class RollbackPlan:
    cancel: list[OutboxRow]  # sent for a bucket a cell billed, received by Stripe under 24 h ago
    manual: list[tuple[OutboxRow, str]]  # the rest of those, with why: credit them by hand
    demote: list[OutboxRow]  # pending rows of such buckets: back to shadow so no later run sends them

    def body(self) -> dict[str, Any]:
        def row(r: OutboxRow) -> dict[str, Any]:
            return {"id": r.id, "org_id": r.org_id, "bucket_start": r.bucket_start, "meter": r.meter,
                    "value": str(r.value), "sent_at": r.sent_at}

        return {"cancel": [row(r) for r in self.cancel],
                "manual_credit": [row(r) | {"why": why} for r, why in self.manual],
                "demote": [row(r) for r in self.demote]}


def billed_by_cells(row: OutboxRow, cells: Sequence[CellStatus],
                    org_cells: Mapping[tuple[str, int], frozenset[str]] | None) -> bool | None:
    """Did the cells bill this row's usage too? None when only part of it (an operator decides)."""
    billing = {c.cell_id for c in cells if row.bucket_start < c.billed_through}
    if not billing:
        return False
    if len(billing) == len(cells):
        return True
    sources = (org_cells or {}).get((row.org_id, row.bucket_start))
    if sources is None:
        return None
    if sources <= billing:
        return True
    return None if sources & billing else False


def plan_rollback(rows: Sequence[OutboxRow], cells: Sequence[CellStatus], now: int,
                  org_cells: Mapping[tuple[str, int], frozenset[str]] | None = None) -> RollbackPlan:
    plan = RollbackPlan([], [], [])
    for r in sorted(rows, key=lambda r: (r.bucket_start, r.id)):
        if r.state not in ("sent", "pending"):
            continue
        billed = billed_by_cells(r, cells, org_cells)
        if billed is False:
            continue
        if r.state == "pending":
            if billed:
                plan.demote.append(r)
            continue
        if billed is None:
            plan.manual.append((r, "part of this org's usage in the bucket came from a cell that billed it: "
                                   "credit that part by hand"))
        elif r.sent_at is not None and now - r.sent_at < ADJUST_WINDOW_SECONDS - ADJUST_MARGIN_SECONDS:
            plan.cancel.append(r)
        else:
            plan.manual.append((r, f"sent at {r.sent_at}, over 24 h ago: Stripe no longer cancels it; credit "
                                   f"{r.value} on {r.meter} by hand"))
    return plan
