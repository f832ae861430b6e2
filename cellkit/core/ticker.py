"""Tick math: what one usage_tick covers, exactly.

A running sandbox carries a cursor: the end (integer microseconds) of its last
tick. The next tick covers [cursor, now) and moves the cursor to now, so the
intervals of consecutive ticks tile the running time with no gap, no overlap
and no rounding: the seed truncated each interval to whole seconds and lost
about 0.5 s per 20 s tick (SEED-NOTES defect 1). A resize or stop ends the
current interval at the event time (a final tick at the old size) and the next
interval starts there at the new size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from cellkit.core.timeutil import HOUR_US, rfc3339, seconds_float

# The edge refuses a tick longer than an hour (its MAX_INTERVAL_SECONDS), and
# after a longer gap (worker down, host paused) nobody can vouch for the time
# before the last hour: catch-up is capped there and the rest is reported.
MAX_CATCHUP_US = HOUR_US
USAGE_TICK = "usage_tick"

# "halted": stopped by the edge's halt of its org (credits exhausted); a resume wakes exactly these.
Status = Literal["running", "stopped", "halted"]


@dataclass(frozen=True)
class Sandbox:
    """A sandbox as the cell's database knows it; ``last_tick_us`` is the ticker's cursor."""

    sandbox_id: str
    org_id: str
    plan: str
    worker_id: str
    memory_mb: int
    cpu_count: int
    started_us: int
    last_tick_us: int
    status: Status = "running"


@dataclass(frozen=True)
class TickPlan:
    sandbox: Sandbox
    start_us: int
    end_us: int
    # Time before start_us not covered because the gap exceeded the catch-up cap.
    skipped_us: int = 0

    @property
    def interval_us(self) -> int:
        return self.end_us - self.start_us


def plan_tick(sandbox: Sandbox, now_us: int, worker_id: str) -> TickPlan | None:
    """The tick this worker owes for this sandbox at ``now_us``, or None.

    None when the sandbox is not running, when another worker owns it (the
    zombie guard: a migration source that still lists the sandbox must not
    tick it, SEED-NOTES defect 4) or when no time has passed.
    """
    if sandbox.status != "running" or sandbox.worker_id != worker_id:
        return None
    if now_us <= sandbox.last_tick_us:
        return None
    start = max(sandbox.last_tick_us, now_us - MAX_CATCHUP_US)
    return TickPlan(sandbox, start, now_us, skipped_us=start - sandbox.last_tick_us)


def advanced(plan: TickPlan) -> Sandbox:
    return replace(plan.sandbox, last_tick_us=plan.end_us)


def envelope_id(cell_id: str, sandbox_id: str, end_us: int) -> str:
    """Deterministic: a tick re-planned after a crash (same cursor, same end) gets the same id."""
    return f"{cell_id}:{sandbox_id}:{end_us}"


# Free-tier cost: the edge's reference rate, 0.0004 cents per GB-second.
CENTS_PER_GB_SECOND = Decimal("0.0004")


def cost_cents(memory_mb: int, interval_us: int) -> float:
    cents = CENTS_PER_GB_SECOND * memory_mb * interval_us / (1024 * 1_000_000)
    return float(cents.quantize(Decimal("0.000001")))


def tick_envelope(plan: TickPlan, cell_id: str) -> dict[str, Any]:
    """The CONTRACT section 3 envelope for one tick."""
    sbx = plan.sandbox
    return {
        "id": envelope_id(cell_id, sbx.sandbox_id, plan.end_us),
        "type": USAGE_TICK,
        "sandbox_id": sbx.sandbox_id,
        "org_id": sbx.org_id,
        "plan": sbx.plan,
        "worker_id": sbx.worker_id,
        "cell_id": cell_id,
        "payload": {
            "memory_mb": sbx.memory_mb,
            "cpu_count": sbx.cpu_count,
            "interval_s": seconds_float(plan.interval_us),
            "cost_cents": cost_cents(sbx.memory_mb, plan.interval_us),
        },
        "timestamp": rfc3339(plan.end_us),
    }
