"""Two rollups at once, and a rollup killed at every step: enumerated, on the in-memory adapters.

Each seed builds a fleet's usage (pro orgs, legacy and unified, and a free one) over three hours,
rolls and bills the first two, then delivers the third and stragglers of all three (late samples,
of billed buckets and of the one not rolled yet) and lets a last run, A, roll the third bucket,
bill the stragglers and send. A's store and Stripe calls are
counted; for EVERY call k of A, one scenario does one thing there:

- kills A before or after the call (its lease stays until it expires);
- fails the call (a throttled store write, a Stripe 5xx, or an event Stripe accepted and whose
  answer was lost);
- runs a second rollup B to completion at that moment (A holds the lease: B must stand down);
- lets A's lease expire there and runs B to completion while A, presumed dead, carries on (both
  must converge: the same rows, identifiers and transitions);
- as the last, but B is itself killed at one of its own steps j (seeded).

Then the schedule runs on with no faults and the scenario checks: Stripe's total per (customer,
meter) equals the ticks' ledger to the micro-unit, no identifier accepted twice (also a day later),
no outbox row pending, shadow or failed, no sample lost or left late, the free org never billed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.core.orgs import Org
from tests.simulation.edge import BUCKET, GRACE, LEASE, Edge, check
from tests.simulation.engine import (
    Action,
    FaultLog,
    OrgPlan,
    Steps,
    Tick,
    Usage,
    crash_after,
    crash_before,
    failer,
    killer,
    ledger,
    record,
    seeds,
)

T0 = 1_795_564_800
PRO = [OrgPlan("acme", "legacy", "cus_acme"), OrgPlan("initech", "unified", "cus_initech")]
FREE = OrgPlan("free-co", "legacy", "cus_free")
MODULE = "rollup_race"


@dataclass
class World:
    edge: Edge
    ticks: list[Tick]
    log: FaultLog
    rng: random.Random

    def a(self, steps: Steps) -> None:
        self.edge.rollup(steps)


@functools.lru_cache(maxsize=4)
def _before_a(seed: int) -> World:
    """Everything up to the moment run A starts (built once per seed; each scenario starts from a fork)."""
    rng = random.Random(seed)
    edge = Edge(FixedClock(T0), shadow=False)
    for o in [*PRO, FREE]:
        edge.store.put_org(Org(o.org_id, plan="free" if o is FREE else "pro", billing_mode=o.billing_mode,
                               stripe_customer_id=o.customer))
    usage = Usage([*PRO, FREE], T0, rng, period_s=600, per_org=1)
    ticks = usage.ticks_until(T0 + 3 * BUCKET)
    rng.shuffle(ticks)
    # Each hour arrives in time but for a few stragglers: the first two hours' come with the third hour
    # (their buckets are rolled: late rows), the third hour's just before A (its bucket is not: they wait).
    # The unified org's cell was cut off for the whole third hour: that hour it is billed by stragglers only.
    third = "2026-11-25T02"
    on_time = [t for t in ticks if rng.random() < 0.85
               and not (t.org.billing_mode == "unified" and t.envelope["timestamp"] >= third)]
    stragglers = [t for t in ticks if t not in on_time]
    edge.clock.set(T0 + 2 * BUCKET + 100)
    assert edge.ingest([t.envelope for t in on_time if t.envelope["timestamp"] < third])
    edge.clock.set(T0 + 2 * BUCKET + GRACE)
    edge.rollup()
    edge.clock.set(T0 + 3 * BUCKET + 100)
    assert edge.ingest([t.envelope for t in on_time if t.envelope["timestamp"] >= third])
    assert edge.ingest([t.envelope for t in stragglers if t.envelope["timestamp"] < third])
    edge.clock.set(T0 + 3 * BUCKET + GRACE + 1)
    assert edge.ingest([t.envelope for t in stragglers if t.envelope["timestamp"] >= third])
    return World(edge, ticks, FaultLog(), rng)


def world(seed: int) -> World:
    """A world of its own at the moment run A starts."""
    w = _before_a(seed)
    rng = random.Random()
    rng.setstate(w.rng.getstate())
    return World(w.edge.fork(), w.ticks, FaultLog(), rng)


def steps_of_a(seed: int) -> int:
    w = world(seed)
    steps = Steps()
    w.a(steps)
    return steps.count


# --- what happens at step k of A -----------------------------------------------------------------

Make = Callable[[World], Action]


kill_before, kill_after = killer("rollup_killed", crash_before), killer("rollup_killed", crash_after)


def call_fails(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        if name != "send_meter_event":
            return failer("store_throttled")(w)(name, run)
        w.edge.stripe.faults.append(w.rng.choice(["5xx", "lost"]))
        w.log.note("stripe_meter_lost" if w.edge.stripe.faults[-1] == "lost" else "stripe_meter_5xx")
        return run()

    return act


def b_runs(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.log.note("rollup_concurrent")
        w.edge.rollup()
        return run()

    return act


def b_takes_over(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.log.note("rollup_lease_expired_under_a_live_run")
        w.edge.clock.advance(LEASE + 1)
        w.edge.rollup()
        return run()

    return act


def b_takes_over_and_dies(w: World) -> Action:
    def act(name: str, run: Callable[[], Any]) -> Any:
        w.log.note("rollup_lease_expired_under_a_live_run")
        w.log.note("rollup_killed")
        w.edge.clock.advance(LEASE + 1)
        j = w.rng.randint(1, 40)
        w.edge.rollup(Steps(j, w.rng.choice([crash_before, crash_after])))
        return run()

    return act


ACTIONS: list[Make] = [kill_before, kill_after, call_fails, b_runs, b_takes_over, b_takes_over_and_dies]
SEEDS = seeds(0.006)


def scenario(seed: int, k: int, make: Make) -> None:
    w = world(seed)
    w.rng.seed(seed * 10_000 + k)  # each step its own draws (which Stripe failure, B's step j)
    w.a(Steps(k, make(w)))
    w.edge.settle(rounds=3)
    pro = [t for t in w.ticks if t.org is not FREE]
    check(w.edge, seed, ledger(pro), {t.envelope["id"] for t in pro}, {FREE.customer})
    record(MODULE, w.log)


@pytest.mark.parametrize("make", ACTIONS, ids=[a.__name__ for a in ACTIONS])
@pytest.mark.parametrize("seed", SEEDS)
def test_at_every_step_of_a_rollup_a_crash_or_a_second_rollup_changes_nothing_billed(seed: int, make: Make) -> None:
    for k in range(1, steps_of_a(seed) + 1):
        try:
            scenario(seed, k, make)
        except AssertionError as exc:
            raise AssertionError(f"{make.__name__} at step {k}: {exc}") from exc


def test_run_a_has_steps_worth_enumerating() -> None:
    """A rolls a bucket, bills stragglers and sends: dozens of store and Stripe calls, each a boundary."""
    w = world(0)
    steps = Steps()
    w.a(steps)
    assert steps.count >= 20, steps.names
    assert {"acquire_lease", "create_outbox_rows", "apply_late", "mark_late_swept", "send_meter_event",
            "transition", "release_lease"} <= set(steps.names), steps.names
