"""Verify: meter events flowing from T, every cell stood down, each bucket around T billed exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.cutover.checks import Check, StageFlags, span
from chalicelib.core.outbox import OutboxRow

# The margin verify gives a closed bucket's rows to be rolled and sent. The schedule runs every 5 minutes
# (app.py), but a big hour's workers and its send take minutes more (docs/capacity.md): kept at 15 minutes.
RUN_EVERY_SECONDS = 900


@dataclass(frozen=True)
class BucketVerdict:
    bucket_start: int
    cells: tuple[str, ...]  # cells that billed it
    edge: bool  # the edge bills it (bucket >= T), or sent events for it
    edge_events: int  # meter events the edge sent for it
    verdict: str  # "cell", "edge", "both", "neither"

    def body(self) -> dict[str, Any]:
        return {"bucket_start": self.bucket_start, "cells": list(self.cells), "edge": self.edge,
                "edge_events": self.edge_events, "verdict": self.verdict}


def seam(cells: Sequence[CellStatus], t: int, bucket: int, sent: Sequence[OutboxRow], around: int = 2,
         last_closed: int | None = None) -> list[BucketVerdict]:
    """Who billed each bucket around T, per cell: both or neither is a broken seam."""
    edges = [c.billed_through for c in cells] + [t]
    lo = min(edges) - around * bucket
    hi = max(edges) + around * bucket
    if last_closed is not None:
        hi = min(hi, max(last_closed + bucket, t))
    sent_per_bucket: dict[int, int] = {}
    for r in sent:
        sent_per_bucket[r.bucket_start] = sent_per_bucket.get(r.bucket_start, 0) + 1
    out: list[BucketVerdict] = []
    for b in range(lo - lo % bucket, hi, bucket):
        billing = tuple(sorted(c.cell_id for c in cells if b < c.billed_through))
        edge = b >= t or sent_per_bucket.get(b, 0) > 0
        missing = [c for c in cells if b >= c.billed_through and not c.billers_running]
        if billing and edge:
            verdict = "both"
        elif not edge and missing:
            verdict = "neither"
        else:
            verdict = "edge" if edge else "cell"
        out.append(BucketVerdict(b, billing, edge, sent_per_bucket.get(b, 0), verdict))
    return out


def check_seam(verdicts: Sequence[BucketVerdict]) -> list[Check]:
    both = [v for v in verdicts if v.verdict == "both"]
    neither = [v for v in verdicts if v.verdict == "neither"]
    checks: list[Check] = []
    if both:
        checks.append(Check("seam", False, f"{len(both)} bucket(s) billed by both the edge and a cell, from "
                                           f"{both[0].bucket_start} (cells {', '.join(both[0].cells)}; edge events "
                                           f"sent {sum(v.edge_events for v in both)}): cancel with "
                                           "`cutover rollback` or re-arm at the cells' billed_through"))
    if neither:
        checks.append(Check("seam", False, f"{len(neither)} bucket(s) billed by nobody, from "
                                           f"{neither[0].bucket_start}: the cells stopped before T; re-arm with T "
                                           "at the cells' billed_through (the edge then bills them)"))
    return checks or [Check("seam", True, f"{len(verdicts)} bucket(s) around T each billed exactly once")]


def check_cells_stood_down(cells: Sequence[CellStatus], t: int) -> list[Check]:
    if not cells:
        return [Check("cells", False, "no cell has reported its status")]
    out = []
    for c in sorted(cells, key=lambda c: c.cell_id):
        if c.authority != "edge" or c.billers_running:
            out.append(Check(f"cell:{c.cell_id}", False,
                             f"authority={c.authority}, billers_running={c.billers_running}: the cell still bills; "
                             "every bucket from T it bills is billed twice; set PRO_BILLING_AUTHORITY=edge"))
        else:
            out.append(Check(f"cell:{c.cell_id}", True, f"authority=edge, billers stopped, billed through "
                                                        f"{c.billed_through}"))
    return out


def check_flowing(rows: Sequence[OutboxRow], t: int, bucket: int, grace: int, now: int,
                  run_every: int = RUN_EVERY_SECONDS) -> Check:
    """Meter events flow: buckets from T that have had time to roll have rows, sent, none stuck or failed."""
    live = [r for r in rows if r.bucket_start >= t]
    first_due = t + bucket + grace + run_every
    stuck_before = now - 2 * run_every
    shadow = [r for r in live if r.state == "shadow"]
    failed = [r for r in live if r.state == "failed"]
    stuck = [r for r in live if r.state == "pending" and r.bucket_end + grace < stuck_before]
    sent = [r for r in live if r.state in ("sent", "cancelled")]
    if shadow:
        return Check("flowing", False, f"{len(shadow)} row(s) from T are still shadow: the rollup is not live "
                                       "(SHADOW=false not applied where it runs)")
    if failed:
        return Check("flowing", False, f"{len(failed)} meter event(s) from T rejected by Stripe, first "
                                       f"{failed[0].id}: {failed[0].detail}")
    if stuck:
        return Check("flowing", False, f"{len(stuck)} meter event(s) from T pending for over {2 * run_every} s, "
                                       f"first {stuck[0].id}: customers missing, or Stripe failing")
    if sent:
        return Check("flowing", True, f"{len(sent)} meter event(s) sent for buckets from T")
    if now < first_due:
        return Check("flowing", False, f"no live bucket rolled yet: the first, {span(t, t + bucket)}, is rolled "
                                       f"by {first_due}", wait=True)
    return Check("flowing", False, f"no meter event sent for any bucket from T={t} by {now}: is the rollup "
                                   "scheduled and live?")


def check_armed(flags: StageFlags, t: int) -> Check:
    if flags.value("SHADOW", "true") != "false" or flags.value("BILL_FROM", "0") != str(t):
        return Check("armed", False, f"stage {flags.stage} has SHADOW={flags.value('SHADOW')} BILL_FROM="
                                     f"{flags.value('BILL_FROM')}, not SHADOW=false BILL_FROM={t}: run arm")
    return Check("armed", True, f"SHADOW=false, BILL_FROM={t}")
