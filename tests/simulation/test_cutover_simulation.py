"""The cutover as an actor: cells bill before T, the edge from T, whatever the moment the flags flip.

Each scenario runs one or two cells built with the cell kit (ticker, spool and forwarder, their own
billers) and the edge (real ingest, rollup, sender), on one injected clock, against one Stripe. T is
a bucket boundary. The edge starts in shadow; the operator arms it live with BILL_FROM=T at a seeded
moment F: after T's bucket (T in the past), inside it (the present bucket), or before T (the future).
Independently, once the cells have billed every bucket before T (drain-check), each is switched to
PRO_BILLING_AUTHORITY=edge, at a seeded moment between T + SETTLE and the settling of T's own bucket.
Meanwhile sandboxes start, resize and stop; the forwarder meets 503s, 429s, timeouts and answers lost
after the edge stored the batch; Stripe answers 5xx, 429, times out or loses answers to both sides.

In `test_a_cell_killed_and_restarted_*` the cells keep their spool in SQLite files and are killed at a
seeded store call of a seeded step's ticking, forwarding or billing (before or after it: mid-tick,
between the edge's 202 and the spool delete, between the cell's outbox rows and its cursor), then
restarted on the same file.

The ledger is the simulation's own record of what ran (each sandbox's segments at each size), never
the cell's clipping or the edge's rollup. Once every fault has cleared it checks, for every (customer,
meter): what the cells billed is exactly the pro usage before T and what the edge billed exactly the
pro usage from T, to the micro-unit (each bucket billed by one side only, by its identifiers); no
identifier accepted twice; no outbox row pending or failed on either side (the edge's shadow rows
only before T); every pro sandbox's running time stored by the edge exactly once (nothing lost or
doubled by the spool, the forwarder or a restart); free orgs never billed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cellkit.adapters.clock import ManualClock
from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.faults import Crash
from chalicelib.core.orgs import Org, Plan
from chalicelib.core.pricing import TIERS
from tests.simulation.cells import CrashableCell, EdgeLink
from tests.simulation.edge import BUCKET, Edge
from tests.simulation.engine import (
    US,
    FaultLog,
    OrgPlan,
    Steps,
    crash_after,
    crash_before,
    fail,
    owed,
    record,
    seeds,
)

T0 = 1_795_564_800
STEP = 300
SETTLE = 600
WHEN = ("past", "present", "future")
ORGS: list[tuple[OrgPlan, Plan]] = [
    (OrgPlan("acme", "legacy", "cus_acme"), "pro"), (OrgPlan("initech", "unified", "cus_initech"), "pro"),
    (OrgPlan("hooli", "legacy", "cus_hooli"), "pro"), (OrgPlan("free-co", "legacy", "cus_free"), "free"),
]
SIZES = sorted(TIERS)[:4]


@dataclass
class World:
    seed: int
    rng: random.Random
    edge: Edge
    cells: list[CrashableCell]
    t: int
    flip_at: int
    switch_at: int
    kills: bool
    log: FaultLog = field(default_factory=FaultLog)
    sandboxes: int = 0

    def now(self) -> int:
        return self.edge.clock.now()

    def start_sandbox(self, cell: CrashableCell, org: OrgPlan) -> None:
        self.sandboxes += 1
        cell.start(f"{org.org_id}-sbx{self.sandboxes}", org, self.rng.choice(SIZES))

    def churn(self, cell: CrashableCell) -> None:
        """The control plane's doings: a resize, a stop, a start (each a scale event and a final tick)."""
        for sandbox_id in sorted(cell.open_):
            roll = self.rng.random()
            if roll < 0.04:
                cell.resize(sandbox_id, self.rng.choice(SIZES))
            elif roll < 0.06:
                org = cell.open_[sandbox_id].org
                cell.stop(sandbox_id)
                self.start_sandbox(cell, org)

    def step(self, at: int) -> None:
        self.edge.clock.set(at)
        if at == self.flip_at:
            self.edge.shadow, self.edge.bill_from = False, self.t  # `cutover arm --at T`
        for cell in self.cells:
            cell.clock.set(at * US)
            if at == self.switch_at:
                cell.switch_to_edge(self.t)
            self.churn(cell)
            self.cell_step(cell, at)
        self.edge.stripe.inject(self.rng, self.log, p=0.1)
        if at % 900 == 0:
            self.edge.rollup()

    def cell_step(self, cell: CrashableCell, at: int) -> None:
        if not (self.kills and self.rng.random() < 0.15):
            cell.step(at * US)
            return
        kind = self.rng.choice([crash_before, crash_after])
        phase = self.rng.choice(["tick", "forward", "bill"])
        try:
            cell.step(at * US, Steps(self.rng.randint(1, 10), kind), phase)
        except Crash:
            self.log.note(f"cell_killed_while_{'billing' if phase == 'bill' else phase + 'ing'}")
        cell.restart()


def world(seed: int, when: str, kills: bool, tmp: Path | None) -> World:
    rng = random.Random(seed)
    edge = Edge(FixedClock(T0))
    for org, plan in ORGS:
        edge.store.put_org(Org(org.org_id, plan=plan, billing_mode=org.billing_mode, stripe_customer_id=org.customer))
    t = T0 + rng.randint(2, 3) * BUCKET
    flip = {"past": t + rng.randint(1, 11) * STEP + BUCKET, "present": t + rng.randint(0, 11) * STEP,
            "future": t - rng.randint(1, 11) * STEP}[when]
    # After the cells settled T's previous bucket, before they would settle T's own.
    switch = t + SETTLE + rng.randint(0, (BUCKET - STEP) // STEP) * STEP
    log = FaultLog()
    cells = []
    homes = [ORGS[:2], ORGS[2:]] if rng.random() < 0.5 else [ORGS]
    for i, orgs in enumerate(homes):
        clock = ManualClock(T0 * US)
        db = tmp / f"cell-{i}.db" if tmp is not None else None
        cells.append(CrashableCell(f"cell-{i}", orgs, clock, EdgeLink(edge, rng, log), edge.stripe, db))
    w = World(seed, rng, edge, cells, t, flip, switch, kills, log)
    for cell in cells:
        for org, _ in cell.orgs:
            for _ in range(rng.randint(1, 2)):
                w.start_sandbox(cell, org)
    w.log.note(f"flag_flip_bill_from_in_the_{when}")
    return w


def run(w: World) -> None:
    end = max(w.flip_at, w.switch_at) + BUCKET
    at = T0
    while at < end:
        at += STEP
        w.step(at)
    for cell in w.cells:  # every sandbox stops: the ledger's segments end where the last ticks do
        for sandbox_id in sorted(cell.open_):
            cell.stop(sandbox_id)
    for _ in range(8):  # faults clear: the spools drain, the schedule runs on
        at += 900
        w.edge.clock.set(at)
        for cell in w.cells:
            cell.link.faulty = False
            cell.clock.set(at * US)
            cell.forward(posts=1000)
        w.edge.rollup()
    w.edge.settle(rounds=4)


# --- the checks -----------------------------------------------------------------------------------

Totals = dict[tuple[str, str], int]


def truth(w: World) -> tuple[Totals, Totals]:
    """Pro usage before T and from T, per (customer, meter), in micro-units, from the segments."""
    before: Totals = defaultdict(int)
    after: Totals = defaultdict(int)
    cut = w.t * US
    for cell in w.cells:
        plans = {o.org_id: p for o, p in cell.orgs}
        for seg in cell.segments:
            if plans[seg.org.org_id] != "pro":
                continue
            for side, lo, hi in ((before, seg.start_us, min(seg.end_us, cut)), (after, max(seg.start_us, cut),
                                                                                 seg.end_us)):
                if hi > lo:
                    key, micro = owed(seg.org, seg.memory_mb, hi - lo)
                    side[key] += micro
    return dict(before), dict(after)


def billed_by_side(w: World) -> tuple[Totals, Totals, list[str]]:
    """Stripe's accepted events split by who sent them (the identifiers say), and any on the wrong side."""
    cells: Totals = defaultdict(int)
    edge: Totals = defaultdict(int)
    wrong = []
    for e in w.edge.stripe.events:
        parts = e.identifier.split(":")
        by_cell = parts[0] == "cell"
        bucket = int(parts[3] if by_cell else parts[1])
        (cells if by_cell else edge)[(e.customer, e.event_name)] += int(e.value.replace(".", ""))
        if by_cell != (bucket < w.t):
            wrong.append(e.identifier)
    return {k: v for k, v in cells.items() if v}, {k: v for k, v in edge.items() if v}, wrong


def check(w: World) -> None:
    seed = w.seed
    assert w.edge.stripe.twice_accepted() == [], fail(seed, "a meter-event identifier was accepted twice")
    want_cells, want_edge = truth(w)
    cells, edge, wrong = billed_by_side(w)
    assert wrong == [], fail(seed, f"buckets billed by the wrong side of T={w.t}: {wrong}")
    assert cells == want_cells, fail(seed, f"the cells billed {cells}, their pro usage before T is {want_cells}")
    assert edge == want_edge, fail(seed, f"the edge billed {edge}, pro usage from T is {want_edge}")
    assert "cus_free" not in {c for c, _ in w.edge.stripe.totals}, fail(seed, "a free org was billed")
    assert w.edge.store.outbox_queue("pending") == [] and w.edge.store.outbox_queue("failed") == [], fail(
        seed, "edge outbox rows left pending or failed")
    assert all(r.bucket_start < w.t for r in w.edge.store.outbox_queue("shadow")), fail(
        seed, "shadow rows from T on were never promoted")
    for cell in w.cells:
        assert cell.status() == {"pending": 0, "failed": 0, "spool": 0, "aside": 0}, fail(
            seed, f"{cell.cell_id}: {cell.status()}")
    check_every_second_stored_once(w)


def check_every_second_stored_once(w: World) -> None:
    stored: dict[str, int] = defaultdict(int)
    for bucket in w.edge.store.tables.samples.values():
        for s in bucket.values():
            stored[s.sandbox_id] += int(s.seconds.scaleb(6))
    ran: dict[str, int] = defaultdict(int)
    for cell in w.cells:
        plans = {o.org_id: p for o, p in cell.orgs}
        for seg in cell.segments:
            if plans[seg.org.org_id] == "pro":
                ran[seg.sandbox_id] += seg.end_us - seg.start_us
    assert dict(stored) == {sbx: us for sbx, us in ran.items() if us}, fail(
        w.seed, "the edge's stored seconds per pro sandbox differ from its running time (lost or doubled)")


CUTOVER_SEEDS = seeds(0.25)
RESTART_SEEDS = seeds(0.1)


@pytest.mark.parametrize("seed", CUTOVER_SEEDS)
def test_each_bucket_is_billed_once_by_its_side_of_t_whenever_the_flags_flip(seed: int) -> None:
    w = world(seed, WHEN[seed % 3], kills=False, tmp=None)
    run(w)
    check(w)
    record("cutover", w.log)


def test_the_cells_are_killed_mid_step() -> None:
    """A kill that never fires proves nothing: over a few seeds the cells die and come back."""
    worlds = [world(seed, "present", kills=True, tmp=None) for seed in range(3)]
    for w in worlds:
        run(w)
    kills = [n for w in worlds for kind, n in w.log.kinds.items() if kind.startswith("cell_killed")]
    assert sum(kills) >= 5, [w.log.kinds for w in worlds]


@pytest.mark.parametrize("seed", RESTART_SEEDS)
def test_a_cell_killed_and_restarted_on_its_sqlite_spool_loses_and_doubles_nothing(seed: int, tmp_path: Path) -> None:
    w = world(seed, WHEN[seed % 3], kills=True, tmp=tmp_path)
    run(w)
    check(w)
    record("cell_restart", w.log)
