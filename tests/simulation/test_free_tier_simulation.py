"""The free tier, seeded: credit balances spent exactly once, halted once, resumed exactly.

Each seed runs free orgs in two cells for two hours (tests/simulation/free_world.py): envelopes
duplicated, re-batched and held back for hours, ingest throttled, spend passes killed before or after
a random store call, pushes lost and a cell offline for a while, top-ups and an upgrade racing the
passes. Then every fault clears, the backlog arrives and the schedule runs on. The invariants:

- every account's spend equals the cost of its distinct stored ticks, exactly (integer micro-cents),
  and a free org's balance is max(0, seed + grants - spend);
- halts and resumes alternate (a halt once per exhaustion): halted exactly when the balance is 0;
  the upgraded org is never left halted; every cell holds exactly the edge's halted list;
- no tick of an org was made in a cell after that cell stopped it (until resumed);
- no late tick left uncounted, no notice left unacknowledged.

`test_every_step_of_the_exhausting_pass` enumerates: for every store call k of the pass that
exhausts an org, a crash before or after it, a top-up, an upgrade, or a second pass run there.
The mutants (the seed's id window, spending before storing, flooring cents) must each fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from chalicelib.core.credits import MICRO
from tests.simulation.engine import Action, Steps, crash_after, crash_before, fail, record, seeds
from tests.simulation.free_world import SEED_CENTS, World

ORGS = {"f-one": 1, "f-two": 2, "f-topup": 2, "f-up": 1, "f-big": 4}
SEEDS = seeds(0.025)
KINDS = ["crash_before", "crash_after", "grant", "upgrade", "second_pass"]


def check(w: World) -> None:
    accounts = w.credits.accounts(list(ORGS))
    listed = {h.org_id for h in w.credits.halted_orgs()}
    for org_id in ORGS:
        a = accounts[org_id]
        spent = sum(w.stored_costs[org_id].values())
        assert a.spent_micro == spent, fail(w.seed, f"{org_id} spent {a.spent_micro}, its distinct ticks cost {spent}")
        assert a.halted == (a.notice_seq % 2 == 1), fail(w.seed, f"{org_id}: halts and resumes do not alternate")
        assert a.halted == (org_id in listed), fail(w.seed, f"{org_id}: the halted list disagrees")
        if org_id == "f-up" and a.ended:
            assert not a.halted, fail(w.seed, "the upgraded org is still halted")
            continue
        want = max(0, SEED_CENTS * MICRO + w.grants[org_id] - spent)
        assert a.balance_micro == want, fail(w.seed, f"{org_id} balance {a.balance_micro} != {want}")
        assert a.halted == (want == 0), fail(w.seed, f"{org_id} halted={a.halted} with balance {want}")
    for cell in w.sim_cells.values():
        assert set(cell.halted) == listed, fail(w.seed, f"{cell.cell_id} holds {set(cell.halted)}, edge {listed}")
    assert w.credits.late_free_ticks() == [], fail(w.seed, "late ticks never counted")
    assert w.credits.notices() == [], fail(w.seed, "notices never acknowledged by every cell")
    assert w.ticks_after_ack == [], fail(w.seed, f"ticks after a halt: {w.ticks_after_ack[:3]}")


def build(seed: int, mutant: str | None = None) -> World:
    w = World(seed, random.Random(seed), mutant)
    for org_id, sandboxes in ORGS.items():
        w.add_org(org_id, sandboxes)
    w.grant("f-big", 400, "welcome")
    w.hibernated.add(sorted(w.running["f-two"])[1])  # hibernated by its user: a resume must not wake it
    return w


def actors(w: World, topup_org: str, key: str) -> dict[str, Action]:
    """What can happen at one store call of a pass: a crash, a top-up, an upgrade, a second pass."""
    def then(other: Callable[[], object]) -> Action:
        return lambda name, call: (other(), call())[1]

    return {
        "crash_before": crash_before, "crash_after": crash_after,
        "grant": then(lambda: w.grant(topup_org, 2, key)),
        "upgrade": then(lambda: w.upgrade("f-up")),
        "second_pass": then(w.spend_pass),
    }


def race(w: World, rng: random.Random) -> Steps:
    kind = rng.choice(KINDS)
    w.log.note(f"pass_{kind}")
    return Steps(rng.randint(1, 14), actors(w, "f-topup", f"race-{w.clock.now()}")[kind])


def run(seed: int, mutant: str | None = None) -> World:
    w = build(seed, mutant)
    rng = w.rng
    upgrade_at, outage = rng.randint(20, 100), rng.randint(30, 90)
    for m in range(1, 121):
        w.clock.advance(60)
        w.tick(60)
        w.deliver(faulty=True)
        w.sim_cells["cell-b"].online = not outage <= m < outage + 20
        if m == upgrade_at:
            w.upgrade("f-up")
        if rng.random() < 0.05:
            w.grant("f-topup", rng.randint(1, 4), f"topup-{m}")
        w.spend_pass(race(w, rng) if rng.random() < 0.3 else None)
        w.push_round()
        w.reconcile()
    settle(w)
    return w


def settle(w: World) -> None:
    """Every fault clears: held envelopes arrive, the schedule and the cells' reconcilers run on."""
    w.running = {o: set() for o in w.running}  # the fleet stops: what is in flight still lands
    for cell in w.sim_cells.values():
        cell.online = True
    for _ in range(8):
        w.clock.advance(3600)
        w.deliver(faulty=False)
        w.spend_pass()
        w.push_round()
        w.reconcile()
    while w.credits.notices():
        w.clock.advance(900)
        w.push_round()
    w.reconcile()


@pytest.mark.parametrize("seed", SEEDS)
def test_every_free_tick_is_spent_once_and_every_exhaustion_halts_once(seed: int) -> None:
    w = run(seed)
    check(w)
    assert w.log.total > 10, fail(seed, "the scenario injected almost no faults")
    record("free_tier", w.log)


def minute(w: World, steps: Steps | None = None) -> None:
    """One quiet minute: ticks, their delivery (no faults), a pass, a push round, the reconcilers."""
    w.clock.advance(60)
    w.tick(60)
    w.deliver(faulty=False)
    w.spend_pass(steps)
    w.push_round()
    w.reconcile()


def exhausting_minute() -> tuple[int, int]:
    """The minute whose pass first halts an org in the quiet world of seed 7, and its store calls."""
    w = build(7)
    for m in range(1, 60):
        steps = Steps()
        minute(w, steps)
        if w.credits.halted_orgs():
            return m, steps.count
    raise AssertionError("no pass exhausted an org")


@pytest.mark.parametrize("kind", KINDS)
def test_every_step_of_the_exhausting_pass(kind: str) -> None:
    at, calls = exhausting_minute()
    assert calls > 5, f"the exhausting pass made only {calls} store calls"
    for k in range(1, calls + 1):
        w = build(7)
        for _ in range(at - 1):
            minute(w)
        minute(w, Steps(k, actors(w, "f-one", f"race-{k}")[kind]))
        settle(w)
        check(w)


@pytest.mark.parametrize("mutant", ["id_window", "spend_before_store", "floor_cents"])
def test_each_mutant_fails_the_invariants(mutant: str) -> None:
    for seed in range(3):
        try:
            check(run(seed, mutant))
        except AssertionError:
            return
    raise AssertionError(f"mutant {mutant} passed every invariant in 3 seeds")
