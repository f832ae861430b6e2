"""What the seeded simulations share: seeds, the fault tally, the step interposer, Stripe's side, the ledger.

- Seeds. `SIM_SCENARIOS` is the total number of seeded scenarios across the simulation modules (each
  module takes a fixed share of it, `seeds(share)`); `SIM_SEED=n` replays seed n in every module.
- The tally. Every scenario records itself and the faults it injected, by kind; `conftest.py` sums
  them over xdist workers and prints them at the end of the session (and writes out/simulation-summary.json).
- `Steps`: one process's calls on its ports (store, Stripe), counted across all of them, so a
  scenario can act at call k: crash before or after it, fail it, or run another actor there.
- `SimStripe`: Stripe's meter events for the edge's sender and the cell kit's sender alike; it
  remembers an identifier for 24 h only, as Stripe does, so a row re-sent after a day bills twice
  and `accepted` shows it.
- `Usage`: sandboxes ticking in integer microseconds, with the ledger of what each tick owes in
  micro-units (no floats, no Decimal until the comparison).
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeVar, cast

from cellkit.core.timeutil import rfc3339, seconds_float
from cellkit.ports import SendResult as CellSendResult
from chalicelib.adapters.memory.faults import Crash
from chalicelib.core.meter_events import MeterEvent, Outcome, SendResult
from chalicelib.core.pricing import OVERAGE_METER, TIERS
from chalicelib.ports import StoreUnavailable
from chalicelib.stripe_ports import MeterEventGateway

T = TypeVar("T")
US = 1_000_000
DEFAULT_TOTAL = 240
TOTAL = int(os.environ.get("SIM_SCENARIOS", str(DEFAULT_TOTAL)))
REPLAY = os.environ.get("SIM_SEED")
STRIPE_IDENTIFIER_WINDOW = 86400


def seeds(share: float) -> list[int]:
    """This module's seeds: its share of SIM_SCENARIOS, or the one SIM_SEED being replayed."""
    if REPLAY is not None:
        return [int(REPLAY)]
    return list(range(max(1, round(TOTAL * share))))


# --- the tally (per process; conftest.py merges the xdist workers') ------------------------------

@dataclass
class Tally:
    scenarios: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


TALLY = Tally()


@dataclass
class FaultLog:
    """The faults one scenario injected, by kind (a scenario whose faults never fire proves nothing)."""

    kinds: Counter[str] = field(default_factory=Counter)

    def note(self, kind: str, n: int = 1) -> None:
        self.kinds[kind] += n

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


def record(module: str, log: FaultLog) -> None:
    TALLY.scenarios[module] += 1
    TALLY.faults.update(log.kinds)


def fail(seed: int, what: str) -> str:
    """An assertion message that says how to replay the failure."""
    return f"seed {seed} (replay: SIM_SEED={seed}): {what}"


# --- the step interposer -------------------------------------------------------------------------

Action = Callable[[str, Callable[[], Any]], Any]


class Steps:
    """Counts one process's calls on every port it was given; at call `at`, `action` runs instead.

    The action gets the method's name and a thunk that makes the real call, so it can crash before
    the call, make it and crash after, or run another actor first. After a `Crash` every call raises
    `Crash` too: a killed process makes no further calls, not even its `finally` blocks' releases.
    """

    def __init__(self, at: int = 0, action: Action | None = None) -> None:
        self.at, self.action = at, action
        self.count = 0
        self.dead = False
        self.names: list[str] = []

    def wrap(self, target: T) -> T:
        return cast(T, _Interposed(target, self))

    def call(self, name: str, thunk: Callable[[], Any]) -> Any:
        if self.dead:
            raise Crash(f"{name}: the process was killed earlier")
        self.count += 1
        self.names.append(name)
        if self.count != self.at or self.action is None:
            return thunk()
        try:
            return self.action(name, thunk)
        except Crash:
            self.dead = True
            raise


class _Interposed:
    def __init__(self, target: Any, steps: Steps) -> None:
        self._target, self._steps = target, steps

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._steps.call(name, lambda: attr(*args, **kwargs))

        return call


def crash_before(name: str, run: Callable[[], Any]) -> Any:
    raise Crash(f"killed before {name}")


def crash_after(name: str, run: Callable[[], Any]) -> Any:
    run()
    raise Crash(f"killed after {name}")


class Logged(Protocol):
    log: FaultLog


def killer(note: str, crash: Action) -> Callable[[Logged], Action]:
    """A scenario maker: at step k the process is killed (`crash_before` or `crash_after`), noted as `note`."""
    def make(w: Logged) -> Action:
        w.log.note(note)
        return crash

    make.__name__ = f"kill_{crash.__name__.removeprefix('crash_')}"
    return make


def failer(note: str) -> Callable[[Logged], Action]:
    """A scenario maker: at step k the call raises StoreUnavailable (a throttled store), noted as `note`."""
    def make(w: Logged) -> Action:
        def act(name: str, run: Callable[[], Any]) -> Any:
            w.log.note(note)
            raise StoreUnavailable(f"injected: {name} failed")

        return act

    make.__name__ = "call_fails"
    return make


# --- Stripe's meter events -----------------------------------------------------------------------

StripeFault = Literal["5xx", "429", "timeout", "lost"]


@dataclass
class SimStripe(MeterEventGateway):
    """Meter events as Stripe takes them, from the edge (`send_meter_event`) and the cells (`send`).

    `faults` are answered in order, one per call: 5xx, 429 and a timeout leave nothing behind; "lost"
    accepts the event and loses the answer. An identifier is unique for 24 h only (Stripe's window).
    """

    clock: Callable[[], int]
    faults: list[StripeFault] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # identifier -> when accepted
    accepted: Counter[str] = field(default_factory=Counter)
    events: list[MeterEvent] = field(default_factory=list)
    totals: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    calls: int = 0

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        self.calls += 1
        fault = self.faults.pop(0) if self.faults else None
        if fault == "5xx":
            return SendResult(Outcome.RETRY, "injected 500")
        if fault == "timeout":
            return SendResult(Outcome.RETRY, "injected timeout")
        if fault == "429":
            return SendResult(Outcome.RATE_LIMITED, "injected 429", retry_after=0.0001)
        first = self.seen.get(event.identifier)
        if first is not None and self.clock() - first < STRIPE_IDENTIFIER_WINDOW:
            return SendResult(Outcome.DUPLICATE, f"An event already exists with identifier {event.identifier}")
        self.seen[event.identifier] = self.clock()
        self.accepted[event.identifier] += 1
        self.events.append(event)
        self.totals[(event.customer, event.event_name)] += Decimal(event.value)
        if fault == "lost":
            return SendResult(Outcome.RETRY, "connection dropped after accept")
        return SendResult(Outcome.SENT)

    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> CellSendResult:
        """The cell kit's MeterEvents port, on the same Stripe."""
        result = self.send_meter_event(MeterEvent(event_name, identifier, customer, value, timestamp))
        outcome = {Outcome.SENT: "sent", Outcome.DUPLICATE: "duplicate", Outcome.RATE_LIMITED: "rate_limited",
                   Outcome.REJECTED: "rejected"}.get(result.outcome, "retry")
        return CellSendResult(cast(Any, outcome), result.detail, result.retry_after)

    def inject(self, rng: random.Random, log: FaultLog, p: float = 0.4) -> None:
        """With probability p, a burst of one to three failures for the next calls."""
        if rng.random() >= p:
            return
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["5xx", "429", "timeout", "lost"])
            self.faults.append(cast(StripeFault, kind))
            log.note(f"stripe_meter_{kind}")

    def twice_accepted(self) -> list[str]:
        return sorted(i for i, n in self.accepted.items() if n > 1)

    def micro_totals(self) -> dict[tuple[str, str], int]:
        """Stripe's totals in micro-units, refusing any value finer than a micro-unit."""
        out: dict[tuple[str, str], int] = {}
        for key, value in self.totals.items():
            micro = value.scaleb(6)
            if micro != micro.to_integral_value():
                raise AssertionError(f"{key}: {value} is finer than a micro-unit")
            if micro:
                out[key] = int(micro)
        return out


# --- usage: sandboxes, ticks and what they owe ---------------------------------------------------

@dataclass(frozen=True)
class OrgPlan:
    org_id: str
    billing_mode: Literal["legacy", "unified"]
    customer: str


@dataclass
class Sandbox:
    sandbox_id: str
    org: OrgPlan
    memory_mb: int
    cursor_us: int


def owed(org: OrgPlan, memory_mb: int, us: int) -> tuple[tuple[str, str], int]:
    """(customer, meter) and micro-units for `us` microseconds at `memory_mb` (CONTRACT section 5)."""
    if org.billing_mode == "unified":
        return (org.customer, OVERAGE_METER), memory_mb * us // 1024
    return (org.customer, TIERS[memory_mb].meter), us


@dataclass(frozen=True)
class Tick:
    envelope: dict[str, Any]
    org: OrgPlan
    memory_mb: int
    us: int


@dataclass
class Usage:
    """Sandboxes that tick every `period_s` (plus up to a second of jitter), in integer microseconds.

    Sizes are tier sizes (multiples of 1024 MB), so a unified org's GB-seconds are exact in micro-units.
    """

    orgs: list[OrgPlan]
    start_s: int
    rng: random.Random
    period_s: int = 60
    per_org: int = 2
    cell_id: str = "cell-sim"
    sandboxes: list[Sandbox] = field(default_factory=list)
    made: int = 0

    def __post_init__(self) -> None:
        self.sandboxes = [Sandbox(f"{o.org_id}-sbx{i}", o, self.rng.choice(list(TIERS)), self.start_s * US)
                          for o in self.orgs for i in range(self.per_org)]

    def ticks_until(self, until_s: int) -> list[Tick]:
        out = []
        for sbx in self.sandboxes:
            while True:
                us = self.period_s * US + self.rng.randint(0, US - 1)
                if sbx.cursor_us + us > until_s * US:
                    break
                sbx.cursor_us += us
                out.append(Tick(self._envelope(sbx, us), sbx.org, sbx.memory_mb, us))
        return out

    def _envelope(self, sbx: Sandbox, us: int) -> dict[str, Any]:
        self.made += 1
        return {
            "id": f"{self.cell_id}:{sbx.sandbox_id}:{sbx.cursor_us}", "type": "usage_tick",
            "sandbox_id": sbx.sandbox_id, "org_id": sbx.org.org_id, "plan": "pro", "worker_id": "w1",
            "cell_id": self.cell_id,
            "payload": {"interval_s": seconds_float(us), "memory_mb": sbx.memory_mb, "cpu_count": 1,
                        "cost_cents": 0},
            "timestamp": rfc3339(sbx.cursor_us),
        }


def ledger(ticks: list[Tick]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for t in ticks:
        key, micro = owed(t.org, t.memory_mb, t.us)
        out[key] += micro
    return dict(out)
