"""The free tier's simulated world: free orgs ticking in two cells, the edge's ingest, spend pass and
pushes on the in-memory adapters, a forwarder that duplicates, re-batches and holds envelopes back
for hours, spend passes killed at every store call, top-ups and upgrades racing the exhausting pass.

`Mutant`s swap one piece for a known-wrong one (the seed's id window, spending before the tick is
stored, flooring fractional cents); tests/simulation/test_free_tier_simulation.py checks each one
fails the invariants the real code keeps.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from cellkit.core.timeutil import rfc3339, seconds_float
from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.credits import MICRO, FreeTick, apply_late, new_account
from chalicelib.core.envelopes import parse_batch
from chalicelib.core.orgs import Org
from chalicelib.credit_ports import CellPusher, CreditStore
from chalicelib.ports import StoreUnavailable
from chalicelib.services.credits import end_free_credits, grant_credits, run_spend_pass
from chalicelib.services.halt_push import push_notices
from chalicelib.services.ingest import ingest_batch
from chalicelib.settings import Settings, load_settings
from tests.simulation.engine import FaultLog, Steps

T0 = 1_795_564_800
SEED_CENTS = 4
CELLS = ("cell-a", "cell-b")


def free_settings() -> Settings:
    return load_settings({"FREE_TIER_SEED_CENTS": str(SEED_CENTS), "EVENT_SECRET": "x",
                          "STRIPE_API_KEY": "sk_test_x"})


# --- mutants: each a known-wrong piece ------------------------------------------------------------

class WindowLedger(MemoryCredits):
    """The seed's deduplication: an LRU of the last 1,024 ids per org; an older id counts again."""

    def __init__(self, inner: MemoryCredits, window: int = 1024) -> None:
        super().__init__(inner.tables, inner.faults)
        self.window = window
        self.seen: dict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)
        self.copies = 0

    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        fresh = [t for t in ticks if t.event_id not in self.seen[t.org_id]]
        self.copies += 1
        stored = super().put_free_ticks([replace(t, event_id=f"{t.event_id}#{self.copies}") for t in fresh])
        for t in fresh:  # remembered once stored, as the seed's account did after its debit
            lru = self.seen[t.org_id]
            lru[t.event_id] = None
            if len(lru) > self.window:
                lru.popitem(last=False)
        return stored


class FlooredLedger(MemoryCredits):
    """The seed's Math.floor(cost_cents): a fraction of a cent spends nothing."""

    def __init__(self, inner: MemoryCredits) -> None:
        super().__init__(inner.tables, inner.faults)

    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        return super().put_free_ticks([replace(t, cost_micro=t.cost_micro // MICRO * MICRO) for t in ticks])


class SpendFirstLedger(MemoryCredits):
    """Spends each tick new to the ledger at once, before storing it (the seed's debit fan-out): a
    failed store answers 503, the cell re-sends, and the tick is spent again. Its items are stored
    pre-counted (late and already cleared), so the spend pass does not count them a second time."""

    def __init__(self, inner: MemoryCredits) -> None:
        super().__init__(inner.tables, inner.faults)

    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        new = [t for t in ticks if t.event_id not in self.tables.ledger.get(t.slot_start, {})]
        for t in new:
            with self.tables.lock:
                account = self.tables.accounts.get(t.org_id) or new_account(t.org_id, SEED_CENTS)
                self.commit_account(apply_late(account, t.cost_micro, 0), account.version)
        stored = super().put_free_ticks([replace(t, late=True) for t in new])
        self.tables.marked.difference_update((t.slot_start, t.event_id) for t in new)
        return stored


MUTANTS: dict[str, Callable[[MemoryCredits], MemoryCredits]] = {
    "id_window": WindowLedger, "spend_before_store": SpendFirstLedger, "floor_cents": FlooredLedger,
}


# --- the cells, as the edge sees them: they ack pushes and reconcile against the halted list -------

@dataclass
class HaltingCell:
    cell_id: str
    online: bool = True
    halted: dict[str, int] = field(default_factory=dict)  # org -> when this cell stopped it
    stopped: dict[str, set[str]] = field(default_factory=dict)  # org -> sandboxes the halt stopped

    def halt(self, org_id: str, now: int, sandboxes: list[str]) -> None:
        if org_id not in self.halted:
            self.halted[org_id] = now
            self.stopped[org_id] = set(sandboxes)

    def resume(self, org_id: str) -> set[str]:
        self.halted.pop(org_id, None)
        return self.stopped.pop(org_id, set())


@dataclass
class World(CellPusher):
    seed: int
    rng: random.Random
    mutant: str | None = None
    clock: FixedClock = field(default_factory=lambda: FixedClock(T0))
    store: MemoryStore = field(default_factory=MemoryStore)
    credits: MemoryCredits = field(default_factory=MemoryCredits)
    cells: MemoryCells = field(default_factory=MemoryCells)
    log: FaultLog = field(default_factory=FaultLog)
    sim_cells: dict[str, HaltingCell] = field(default_factory=lambda: {c: HaltingCell(c) for c in CELLS})
    running: dict[str, set[str]] = field(default_factory=dict)  # (cell:sandbox) ids running, per org
    hibernated: set[str] = field(default_factory=set)
    forwarder: list[dict[str, Any]] = field(default_factory=list)
    held: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (deliver at, envelope)
    stored_costs: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    grants: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ticks_after_ack: list[str] = field(default_factory=list)
    made: int = 0

    def __post_init__(self) -> None:
        if self.mutant:
            self.credits = MUTANTS[self.mutant](self.credits)
        for c in CELLS:
            self.cells.put_cell_status(CellStatus(c, "edge", False, 0, 0, 0, T0, T0, f"http://{c}.local"))

    @property
    def settings(self) -> Settings:
        return free_settings()

    def add_org(self, org_id: str, sandboxes: int) -> None:
        self.store.put_org(Org(org_id))
        self.running[org_id] = {f"{CELLS[i % 2]}:{org_id}-s{i}" for i in range(sandboxes)}

    # -- the cells' side of a push
    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        cell = self.sim_cells[base_url.removeprefix("http://").removesuffix(".local")]
        if not cell.online or self.rng.random() < 0.2:
            self.log.note("push_lost")
            return False
        self._apply(cell, body["org_id"], path.endswith("halt-org"))
        return True

    def _apply(self, cell: HaltingCell, org_id: str, halt: bool) -> None:
        mine = {s for s in self.running.get(org_id, set()) if s.startswith(cell.cell_id + ":")}
        if halt:
            cell.halt(org_id, self.clock.now(), sorted(mine - self.hibernated))
        else:
            cell.resume(org_id)

    def reconcile(self) -> None:
        listed = {h.org_id for h in self.credits.halted_orgs()}
        for cell in self.sim_cells.values():
            if not cell.online:
                continue
            for org_id in listed - set(cell.halted):
                self._apply(cell, org_id, True)
            for org_id in set(cell.halted) - listed:
                self._apply(cell, org_id, False)

    # -- usage
    def tick(self, step_s: int) -> None:
        """Every running sandbox not stopped by its cell ticks every 20 s with a cost in micro-cents."""
        now = self.clock.now()
        for org_id, sandboxes in self.running.items():
            for sbx in sorted(sandboxes - self.hibernated):
                cell = self.sim_cells[sbx.split(":")[0]]
                if org_id in cell.halted:
                    continue
                for t in range(now - step_s + 20, now + 1, 20):
                    cost = self.rng.choice([0, 1, 33_333, 125_000, self.rng.randint(1, 900_000)])
                    self.made += 1
                    self.forwarder.append({
                        "id": f"{sbx}:{t}:{self.made}", "type": "usage_tick", "sandbox_id": sbx, "org_id": org_id,
                        "plan": "free", "worker_id": "w1", "cell_id": cell.cell_id, "timestamp": rfc3339(t * 10**6),
                        "payload": {"interval_s": 20, "memory_mb": 1024, "cpu_count": 1,
                                    "cost_cents": seconds_float(cost)},
                    })

    def deliver(self, faulty: bool) -> None:
        """Re-batched, duplicated, some held back for hours; a throttled store answers 503 (kept)."""
        now = self.clock.now()
        due = [e for at, e in self.held if at <= now]
        self.held = [(at, e) for at, e in self.held if at > now]
        pool, self.forwarder = self.forwarder + due, []
        self.rng.shuffle(pool)
        while pool:
            size = self.rng.randint(1, 30)
            batch, pool = pool[:size], pool[size:]
            if faulty and self.rng.random() < 0.1:
                self.held += [(now + self.rng.randint(2, 6) * 3600, e) for e in batch]
                self.log.note("batch_held_for_hours")
                continue
            if self.rng.random() < 0.25:
                self.held.append((now + self.rng.randint(60, 9000), self.rng.choice(batch)))  # a re-send, later
                self.log.note("envelope_resent_later")
            if faulty and self.rng.random() < 0.1:
                self.credits.faults.fail_on("put_free_ticks")
                self.log.note("ingest_throttled")
            if not self._ingest(batch + self.rng.sample(batch, k=min(2, len(batch)))):
                self.forwarder += batch

    def _ingest(self, batch: list[dict[str, Any]]) -> bool:
        try:
            wire = parse_batch(json.dumps(batch).encode())
            ingest_batch(wire, "cell-sim", self.store, self.settings, self.clock.now(), self.credits)
        except StoreUnavailable:
            return False
        orgs = self.store.get_orgs({e["org_id"] for e in batch})
        for e in batch:
            if orgs[e["org_id"]].plan != "pro":
                cost = int(Decimal(str(e["payload"]["cost_cents"])) * MICRO)
                self.stored_costs[e["org_id"]][e["id"]] = cost
        return True

    # -- the edge's schedule, and the actors that race it
    def spend_pass(self, steps: Steps | None = None) -> bool:
        credits: CreditStore = self.credits.handle()
        control: Any = self.store.handle()
        if steps is not None:
            credits, control = steps.wrap(credits), steps.wrap(control)
        try:
            run_spend_pass(control, credits, self.settings, self.clock.now())
        except (Crash, StoreUnavailable):
            return False
        return True

    def grant(self, org_id: str, cents: int, key: str) -> None:
        result = grant_credits(self.credits, self.settings, org_id, Decimal(cents), key, self.clock.now())
        if result.applied:
            self.grants[org_id] += cents * MICRO

    def upgrade(self, org_id: str) -> None:
        self.store.update_org(org_id, {"plan": "pro"}, self.clock.now())
        end_free_credits(self.credits, self.settings, org_id, self.clock.now())

    def push_round(self) -> None:
        push_notices(self.credits, self.cells, self, self.clock.now())
