"""`make run`'s free org: `soylent` runs out of credits in both cells, is halted (its sandboxes stop, a create
is refused), upgrades through the signed checkout after T and resumes (CONTRACT section 10).

The local stage seeds free orgs with 0.3 cents (`FREE_TIER_SEED_CENTS`), and soylent runs two 4 GB sandboxes
in each cell (0.0004 cents per GB-second: about 50 s of credit). Each POST /run (the schedule, every bucket)
spends; each cell pulls GET /internal/halted-orgs every two seconds and halts or resumes through the kit
(`Halts.reconcile`); the ledger of running time (the ground truth) follows every stop and wake. The report
gets the balance trail (org-policy once a bucket), the halt and resume times, the refused create, and
soylent's Stripe meter events: none may be dated before its upgrade.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cellkit.core.usage import OrgRow
from cellkit.ports import TransportError
from cellkit.services.halts import HaltListUnavailable, pull_halted
from sim.cells import CutoverCell
from sim.cutover_orgs import ORGS, US, Run
from sim.cutover_stripe import checkout
from sim.seam_fleet import SeamLoop

ORG = "soylent"
SANDBOXES = tuple((cell, f"{ORG}-{cell[-1]}{i}") for cell in ("cell-a", "cell-b") for i in range(1, 3))
MEMORY_MB = 4096
PULL_EVERY_US = 2 * US


@dataclass
class FreeWatch:
    run: Run
    fleet: SeamLoop
    trail: list[dict[str, Any]] = field(default_factory=list)
    halted: dict[str, int] = field(default_factory=dict)  # cell -> when it stopped soylent (us)
    resumed: dict[str, int] = field(default_factory=dict)
    refused: dict[str, Any] | None = None
    upgraded_at: int | None = None
    pulled_at: dict[str, int] = field(default_factory=dict)
    polled_bucket: int = 0

    def step(self, now_us: int) -> None:
        """Every fleet step: each cell's pull (every 2 s), and the balance once a bucket."""
        for cell_id, cell in self.fleet.cells.items():
            if now_us - self.pulled_at.get(cell_id, 0) >= PULL_EVERY_US:
                self.pulled_at[cell_id] = now_us
                self._reconcile(cell_id, cell, now_us)
        bucket = now_us // US // self.run.bucket
        if bucket != self.polled_bucket:
            self.polled_bucket = bucket
            self._poll(now_us)

    def _reconcile(self, cell_id: str, cell: CutoverCell, now_us: int) -> None:
        edge = cell.cell.edge
        if edge is None:
            return
        before = {s.sandbox_id: s for s in cell.store.running_sandboxes()}
        try:
            cell.cell.halts.reconcile(pull_halted(edge))
        except (HaltListUnavailable, TransportError):
            return  # cut off (cell-b after T): it catches up when it can reach the edge again
        after = {s.sandbox_id: s for s in cell.store.running_sandboxes()}
        for sandbox_id in before.keys() - after.keys():
            stopped = cell.store.sandbox(sandbox_id)
            if stopped is not None and stopped.status == "halted":  # any org's: wayne, back to free at 0, too
                self.fleet.ledger.closed(sandbox_id, stopped.last_tick_us)
                if stopped.org_id == ORG:
                    self.halted.setdefault(cell_id, stopped.last_tick_us)
        for sandbox_id in after.keys() - before.keys():
            woken = after[sandbox_id]
            self.fleet.ledger.opened(sandbox_id, woken.org_id, woken.memory_mb, woken.started_us)
            if woken.org_id == ORG:
                self.resumed.setdefault(cell_id, woken.started_us)
        if len(self.halted) == len(self.fleet.cells) and self.refused is None:
            self._try_create(now_us)

    def _try_create(self, now_us: int) -> None:
        status = self.fleet.create("cell-a", f"{ORG}-x", ORG, MEMORY_MB, now_us)
        self.refused = {"status": status, "at_us": now_us,
                        "error": self.fleet.refused[-1]["error"] if status != 201 else None}
        if status == 201:
            self.run.problems.append(f"a create for the halted org {ORG} was accepted")

    def _poll(self, now_us: int) -> None:
        try:
            answer = self.fleet.edge.get("/internal/org-policy", {"org_id": ORG})
        except OSError:
            return
        if answer.status == 200:
            body = answer.body
            self.trail.append({"at": now_us // US, "plan": body.get("plan"), "halted": body.get("halted"),
                               "balance_cents": body.get("balance_cents")})

    def body(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        customer = self.run.customers.get(ORG)
        mine = [e for e in events if e["customer"] == customer]
        before = [e for e in mine if self.upgraded_at is None or int(e["timestamp"]) <= self.upgraded_at]
        return {"org_id": ORG, "balance_trail": self.trail, "halted_in_cells_us": self.halted,
                "resumed_in_cells_us": self.resumed, "refused_create": self.refused, "upgraded_at": self.upgraded_at,
                "stripe_events_before_pro": len(before), "stripe_events_after_pro": len(mine) - len(before)}


def schedule_free(run: Run, fleet: SeamLoop, b0: int) -> FreeWatch:
    """soylent's sandboxes start in the first bucket; the fleet runs the watch every step."""
    watch = FreeWatch(run, fleet)
    for cell in fleet.cells.values():  # its sandboxes run in both cells: each holds its org row
        cell.put_org(OrgRow(ORG, "free", "unified", run.customers.get(ORG)))
    for i, (cell_id, sandbox_id) in enumerate(SANDBOXES):
        fleet.at(int((b0 + 0.5 + i * 0.3) * US), f"start {sandbox_id}",
                 partial(_start, fleet, cell_id, sandbox_id))
    fleet.every_step.append(watch.step)
    return watch


def _start(fleet: SeamLoop, cell_id: str, sandbox_id: str, now: int) -> None:
    status = fleet.create(cell_id, sandbox_id, ORG, MEMORY_MB, now)
    if status != 201:
        raise RuntimeError(f"create {sandbox_id} answered {status}: {fleet.refused[-1]}")


def schedule_upgrade(run: Run, fleet: SeamLoop, watch: FreeWatch, boundary: int) -> None:
    """soylent upgrades at `boundary` (after T), through the signed checkout, if it was halted by then."""
    from sim.cutover_scenario import plan_change

    spec = next(o for o in ORGS if o.org_id == ORG)

    def upgrade() -> None:
        if len(watch.halted) < len(fleet.cells):
            run.problems.append(f"{ORG} was not halted in every cell before its upgrade: {watch.halted}")
        checkout(run, ORG)
        watch.upgraded_at = boundary

    plan_change(run, fleet, spec, boundary, "pro", upgrade)


def wait_resumed(watch: FreeWatch, deadline_s: float) -> None:
    while len(watch.resumed) < len(watch.fleet.cells) and time.time() < deadline_s:
        time.sleep(0.5)
