"""Parity math: the cell's GB-seconds against the edge's, per pro org, for one settled window.

`ParityCheck` is the cell's side of a wire contract (CONTRACT section 8): what the cell computes and posts.
The edge's side, `chalicelib/core/cell_reports.py`'s `ParityReport`, is what the edge stores of a post (with
when it was signed and received, and a drift that may be absent). The two products never import each other
(tests/architecture/test_layers.py), so each keeps its own type; the conformance suite (`python -m cellkit
conformance`) and the real-edge tests keep the body between them one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from cellkit.core.usage import OrgRow, ScaleEvent, gb_seconds, mb_us_per_org

DEFAULT_TOLERANCE = Decimal("0.02")
_DRIFT_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class OrgComparison:
    org_id: str
    cell_gb_seconds: Decimal
    edge_gb_seconds: Decimal
    drift: Decimal  # (edge - cell) / cell; 1 when only the edge saw usage

    def flagged(self, tolerance: Decimal) -> bool:
        return abs(self.drift) > tolerance


@dataclass(frozen=True)
class ParityCheck:
    cell_id: str
    window_from: int
    window_to: int
    tolerance: Decimal
    orgs: tuple[OrgComparison, ...]
    skipped_free: tuple[str, ...]
    # Orgs the edge reports but this cell has no row for: homed in another cell (the parity route sums
    # every cell), so comparing them here would be a constant +100 % drift.
    skipped_elsewhere: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not any(o.flagged(self.tolerance) for o in self.orgs)

    def body(self) -> dict[str, Any]:
        """CONTRACT section 8's body; numbers as JSON numbers with at most six places."""
        return {
            "cell_id": self.cell_id,
            "window": {"from": self.window_from, "to": self.window_to},
            "tolerance": float(self.tolerance),
            "orgs": [
                {"org_id": o.org_id, "cell_gb_seconds": float(o.cell_gb_seconds),
                 "edge_gb_seconds": float(o.edge_gb_seconds), "drift": float(o.drift)}
                for o in self.orgs
            ],
            "clean": self.clean,
        }


def last_settled_window(now_s: int, grace_s: int, width_s: int = 3600) -> tuple[int, int]:
    """The most recent whole bucket that ended at least ``grace_s`` ago (the edge's rollup grace)."""
    end = (now_s - grace_s) // width_s * width_s
    return end - width_s, end


def drift(cell: Decimal, edge: Decimal) -> Decimal:
    if cell == 0:
        return Decimal(0) if edge == 0 else Decimal(1)
    return ((edge - cell) / cell).quantize(_DRIFT_PLACES, rounding=ROUND_HALF_EVEN)


def compare(
    cell_id: str,
    window: tuple[int, int],
    events: Iterable[ScaleEvent],
    edge_gb_seconds: Mapping[str, Decimal],
    orgs: Mapping[str, OrgRow],
    now_us: int,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> ParityCheck:
    """Union of orgs on either side; an org the cell knows as free is skipped (its usage never becomes
    edge samples: comparing it is constant -100 % noise, SEED-NOTES defect 3), and so is one only the edge
    saw that the cell has no row for (another cell's org: with two cells every report was otherwise dirty)."""
    start, end = window
    cell_mb_us = mb_us_per_org(events, start * 1_000_000, end * 1_000_000, now_us)
    rows: list[OrgComparison] = []
    skipped: list[str] = []
    elsewhere: list[str] = []
    for org_id in sorted(set(cell_mb_us) | set(edge_gb_seconds)):
        row = orgs.get(org_id)
        if row is not None and row.plan != "pro":
            skipped.append(org_id)
            continue
        if row is None and org_id not in cell_mb_us:
            elsewhere.append(org_id)
            continue
        cell = gb_seconds(cell_mb_us.get(org_id, 0))
        edge = edge_gb_seconds.get(org_id, Decimal(0))
        rows.append(OrgComparison(org_id, cell, edge, drift(cell, edge)))
    return ParityCheck(cell_id, start, end, tolerance, tuple(rows), tuple(skipped), tuple(elsewhere))
