"""Drain: every cell billed through T, nothing pending, its status fresh."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.cutover.checks import Check, span


def check_fresh(c: CellStatus, now: int, stale_after: int) -> Check | None:
    age = now - c.reported_at
    if age > stale_after:
        return Check(f"cell:{c.cell_id}", False, f"last reported {age} s ago (> {stale_after} s): its status is "
                                                 "too old to trust; is its reporter running?")
    return None


def drain_check(c: CellStatus, t: int) -> Check:
    name = f"cell:{c.cell_id}"
    if c.billed_through > t:
        return Check(name, False, f"billed through {c.billed_through} > T={t}: T is too early, buckets "
                                  f"{span(t, c.billed_through)} would be billed twice; choose T >= "
                                  f"{c.billed_through}")
    if c.billed_through < t and not c.billers_running:
        return Check(name, False, f"billed through {c.billed_through} < T={t} and its billers are stopped: "
                                  f"{span(c.billed_through, t)} would be billed by nobody; restart them or "
                                  f"choose T={c.billed_through}")
    if c.billed_through < t:
        return Check(name, False, f"billed through {c.billed_through}, not yet T={t}: still draining", wait=True)
    if c.pending_billable:
        return Check(name, False, f"{c.pending_billable} billable event(s) not yet sent to Stripe", wait=True)
    return Check(name, True, f"billed through T={t}, nothing pending")


def drain_checks(cells: Sequence[CellStatus], t: int, now: int, stale_after: int) -> list[Check]:
    if not cells:
        return [Check("cells", False, "no cell has reported its status: nothing says the cells are drained")]
    out: list[Check] = []
    for c in sorted(cells, key=lambda c: c.cell_id):
        out.append(check_fresh(c, now, stale_after) or drain_check(c, t))
    return out
