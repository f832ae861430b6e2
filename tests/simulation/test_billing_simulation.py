"""A seeded simulation of the billing pipeline with faults, on the in-memory adapters and the real services.

Each scenario (one seed) drives a fleet through ingest, the rollup and the sender while a
seeded generator injects faults: envelopes duplicated, re-batched, reordered and held back past
their bucket's close; ingest throttled (the forwarder retries the batch); the rollup killed at
a random store call (a fresh process takes over once its lease expires); Stripe answering 5xx,
429, timing out, or accepting and losing the answer; the flags flipped from shadow to live with
BILL_FROM in the past. Once every fault has cleared, and once more a day later, it checks against
the fleet's own ledger (computed from the ticks, not by the edge's code): Stripe's total per
(customer, meter) is exactly the pro usage, no identifier was accepted twice, every pro tick is
stored, no outbox row is left behind, free orgs are never billed.

A failure names its seed; `SIM_SEED=n` replays one, `SIM_SCENARIOS=n` runs more (`make soak`; this
module takes 15 % of them). One send worker keeps the order of Stripe calls, so a seed replays exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.envelopes import parse_batch
from chalicelib.core.orgs import Org
from chalicelib.ports import StoreUnavailable
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import Settings, load_settings
from sim.fleet import OrgSpec, SandboxFleet
from tests.simulation.engine import FaultLog, SimStripe, fail, record, seeds

H = 3600
T0 = 1_795_564_800
ORGS = [
    OrgSpec("acme", "legacy", "pro", "cus_acme"),
    OrgSpec("initech", "unified", "pro", "cus_initech"),
    OrgSpec("hooli", "legacy", "pro", "cus_hooli"),
    OrgSpec("free-co", "legacy", "free", "cus_free"),
]
ROLLUP_WRITES = ["save_aggregates", "create_outbox_rows", "mark_bucket_rolled", "advance_cursor", "transition",
                 "put_partial", "apply_late", "mark_late_swept", "acquire_lease", "release_lease"]
SEEDS = seeds(0.15)


def settings(shadow: bool) -> Settings:
    return load_settings({"SHADOW": "true" if shadow else "false", "BILL_FROM": "0", "BUCKET_SECONDS": "3600",
                          "GRACE_SECONDS": "600", "ROLLUP_LOOKBACK_BUCKETS": "8", "LEASE_SECONDS": "360",
                          "SEND_CONCURRENCY": "1",
                          "EVENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x"})


@dataclass
class Scenario:
    seed: int
    rng: random.Random
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: FixedClock = field(default_factory=lambda: FixedClock(T0))
    stripe: SimStripe = field(init=False)
    shadow: bool = True
    log: FaultLog = field(default_factory=FaultLog)
    outbox: list[list[dict[str, Any]]] = field(default_factory=list)  # the cell's forwarder: unsent batches
    pro_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stripe = SimStripe(self.clock.now)

    def services(self, store: MemoryStore | None = None) -> Container:
        return Container(settings(self.shadow), store or self.store, MemoryArchive(), self.clock,
                        meter_gateway=self.stripe)

    def forward(self, ticks: list[dict[str, Any]]) -> None:
        """At-least-once delivery: re-batched, shuffled, some envelopes twice, some batches held back."""
        self.pro_ids.update(t["id"] for t in ticks if t["org_id"] != "free-co")
        self.rng.shuffle(ticks)
        while ticks:
            size = self.rng.randint(1, 40)
            batch, ticks = ticks[:size], ticks[size:]
            if self.rng.random() < 0.2:
                batch = batch + self.rng.sample(batch, k=min(len(batch), 3))
                self.log.note("envelope_duplicated")
            self.outbox.append(batch)

    def deliver(self, hold_back: float) -> None:
        kept: list[list[dict[str, Any]]] = []
        for batch in self.outbox:
            if self.rng.random() < hold_back:
                kept.append(batch)  # a cut-off cell: arrives after its bucket closed
                self.log.note("batch_held_back")
                continue
            if self.rng.random() < 0.1:
                self.store.faults.fail_on("put_samples")  # throttled: 503, the forwarder keeps the batch
                self.log.note("ingest_throttled")
            try:
                # Over the wire, as the route parses it (floats as Decimal).
                wire = parse_batch(json.dumps(batch).encode())
                ingest_batch(wire, "cell-sim", self.store, settings(self.shadow), self.clock.now())
            except StoreUnavailable:
                kept.append(batch)
        self.outbox = kept

    def rollup(self, faulty: bool) -> None:
        if faulty and self.rng.random() < 0.4:
            self.stripe.inject(self.rng, self.log, p=1.0)
        if faulty and self.rng.random() < 0.3:
            doomed = self.store.handle()  # this run's process, killed at one of its writes
            doomed.faults.fail_on(self.rng.choice(ROLLUP_WRITES), nth=self.rng.randint(1, 3),
                                  when=self.rng.choice(["before", "after"]), exc=Crash)
            self.log.note("rollup_killed")
            try:
                run_rollup(self.services(doomed), "sim")
            except Crash:
                self.clock.advance(361)  # its lease expires; the next run is a fresh process
            return
        run_rollup(self.services(), "sim")


def run(seed: int) -> tuple[Scenario, SandboxFleet]:
    rng = random.Random(seed)
    sc = Scenario(seed, rng)
    for o in ORGS:
        sc.store.put_org(Org(o.org_id, plan=o.plan, billing_mode=o.billing_mode, stripe_customer_id=o.customer))
    fleet = SandboxFleet(ORGS, Decimal(T0), period=60, sandboxes_per_org=2, seed=seed)
    hours = rng.randint(2, 4)
    go_live_at = rng.randint(1, hours)  # shadow first; then live with BILL_FROM=0, in the past
    for step in range(1, hours * 4 + 1):
        sc.clock.set(T0 + step * 900)
        sc.forward(fleet.ticks_until(Decimal(sc.clock.now())))
        sc.deliver(hold_back=0.15)
        if step == go_live_at * 4:
            sc.shadow = False
            sc.log.note("flag_flip_shadow_to_live")
        sc.rollup(faulty=True)
    sc.shadow = False
    for _ in range(12):  # every fault clears: the backlog arrives, runs complete
        sc.clock.advance(900)
        sc.deliver(hold_back=0.0)
        sc.rollup(faulty=False)
    sc.clock.advance(86400 + 3600)  # past Stripe's 24 h identifier window: nothing may be sent again
    sc.rollup(faulty=False)
    return sc, fleet


@pytest.mark.parametrize("seed", SEEDS)
def test_every_pro_tick_is_billed_exactly_once_whatever_the_faults(seed: int) -> None:
    sc, fleet = run(seed)
    assert sc.outbox == [], fail(seed, "the forwarder still holds batches")
    assert sc.stripe.twice_accepted() == [], fail(seed, "a meter-event identifier was accepted twice")
    billed = {k: v for k, v in sc.stripe.totals.items() if v}
    assert billed == dict(fleet.billed), fail(seed, "Stripe's totals differ from the ticks' ledger")
    assert not any(customer == "cus_free" for customer, _ in billed), fail(seed, "a free org was billed")
    for queue in ("pending", "shadow", "failed"):
        assert sc.store.outbox_queue(queue) == [], fail(seed, f"rows left {queue}")
    assert all(s.swept for s in sc.store.late_slots(0)), fail(seed, "stragglers never billed (a late slot unswept)")
    stored = {e for bucket in sc.store.tables.samples.values() for e in bucket}
    assert sc.pro_ids <= stored, fail(seed, f"{len(sc.pro_ids - stored)} pro ticks never stored")
    record("billing", sc.log)


def test_the_scenarios_inject_faults() -> None:
    """A simulation whose faults never fire proves nothing: count them over a few seeds."""
    injected = [run(seed)[0].log.total for seed in range(5)]
    assert all(n > 10 for n in injected), injected
