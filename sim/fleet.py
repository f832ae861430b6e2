"""A simulated fleet of sandboxes: usage-tick envelopes plus an independent ledger of what is owed.

The ledger is computed from the ticks alone (seconds per memory tier for
legacy orgs, GB-seconds for unified orgs), never from the edge's own code
paths, so comparing it with what Stripe received is a real check.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from chalicelib.core.pricing import OVERAGE_METER, TIERS

MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class OrgSpec:
    org_id: str
    billing_mode: Literal["legacy", "unified"]
    plan: Literal["pro", "free"]
    customer: str | None = None


@dataclass
class SandboxFleet:
    """Sandboxes that tick every `period` seconds (plus up to a second of jitter), from `start`."""

    orgs: list[OrgSpec]
    start: Decimal
    period: int = 20
    sandboxes_per_org: int = 2
    cell_id: str = "cell-sim"
    seed: int = 7
    billed: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    gb_seconds: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    ticks: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sandboxes = [
            (org, f"{org.org_id}-sbx{i}", self.size(org, i))
            for org in self.orgs
            for i in range(self.sandboxes_per_org)
        ]
        self.cursor = {sbx: self.start.quantize(MICRO) for _, sbx, _ in self.sandboxes}

    def size(self, org: OrgSpec, i: int) -> int:
        # Unified orgs pay GB-seconds at any size: each runs one sandbox at 2048 MB, a size without a tier.
        if org.billing_mode == "unified" and i == self.sandboxes_per_org - 1:
            return 2048
        return self.rng.choice(list(TIERS))

    def ticks_until(self, until: Decimal) -> list[dict[str, Any]]:
        """Every tick that ends before `until` and was not produced yet, shuffled like a real batch."""
        out = []
        for org, sbx, memory_mb in self.sandboxes:
            while True:
                interval = Decimal(self.period) + Decimal(self.rng.randint(0, 999_999)) * MICRO
                end = self.cursor[sbx] + interval
                if end > until:
                    break
                self.cursor[sbx] = end
                out.append(self._envelope(org, sbx, memory_mb, end, interval))
                self._owe(org, memory_mb, interval)
        self.rng.shuffle(out)
        return out

    def _envelope(self, org: OrgSpec, sbx: str, memory_mb: int, end: Decimal, interval: Decimal) -> dict[str, Any]:
        self.ticks += 1
        return {
            "id": f"{self.cell_id}-ev-{self.seed}-{self.ticks}",
            "type": "usage_tick",
            "sandbox_id": sbx,
            "org_id": org.org_id,
            "plan": org.plan,
            "worker_id": "worker-1",
            "cell_id": self.cell_id,
            # A float with at most six decimals survives JSON exactly when read back as Decimal.
            "payload": {"interval_s": float(interval), "memory_mb": memory_mb, "cpu_count": 1, "cost_cents": 0},
            "timestamp": rfc3339(end),
        }

    def _owe(self, org: OrgSpec, memory_mb: int, interval: Decimal) -> None:
        if org.plan != "pro":
            return
        gb_seconds = Decimal(memory_mb) / 1024 * interval
        self.gb_seconds[org.org_id] += gb_seconds
        if org.customer is None:
            return
        if org.billing_mode == "legacy":
            self.billed[(org.customer, TIERS[memory_mb].meter)] += interval
        else:
            self.billed[(org.customer, OVERAGE_METER)] += gb_seconds


def rfc3339(ts: Decimal) -> str:
    whole = int(ts)
    micros = int((ts - whole) / MICRO)
    moment = datetime.fromtimestamp(whole, tz=UTC) + timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


def invalid_envelope(cell_id: str) -> dict[str, Any]:
    """A poison envelope: the edge must quarantine it and keep the rest of the batch."""
    return {
        "id": f"{cell_id}-poison", "type": "usage_tick", "sandbox_id": "sbx-x", "org_id": "acme", "plan": "pro",
        "worker_id": "worker-1", "cell_id": cell_id, "payload": {"interval_s": -5, "memory_mb": 1024},
        "timestamp": "not a time",
    }


def compare(expected: dict[Any, Decimal], actual: dict[Any, Decimal]) -> list[tuple[Any, Decimal, Decimal]]:
    """Keys whose amounts differ (to the micro-unit Stripe is sent), with expected and actual."""
    keys = set(expected) | set(actual)
    wrong = []
    for key in sorted(keys, key=str):
        want = expected.get(key, Decimal(0)).quantize(MICRO)
        got = actual.get(key, Decimal(0)).quantize(MICRO)
        if want != got:
            wrong.append((key, want, got))
    return wrong
