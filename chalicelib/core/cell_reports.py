"""What cells report to the edge (CONTRACT section 8): parity reports and cell status.

Plain data only; the HTTP shape is validated in `entrypoints/api/cells_api.py`, the decisions on
receipt are `services/cell_reports.py`'s and the DynamoDB layout lives in `adapters/dynamodb/cells.py`.
The cutover checks (`core/cutover/`) read these records to decide whether the soak was clean and whether
the cells have drained and stood down.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Authority = Literal["cell", "edge"]


@dataclass(frozen=True)
class OrgParity:
    org_id: str
    cell_gb_seconds: Decimal
    edge_gb_seconds: Decimal
    drift: Decimal | None  # the cell's own measure; None when it has none (both sides zero)


@dataclass(frozen=True)
class ParityReport:
    """One cell's comparison of one window, as the edge received it (a re-post replaces it). The cell's side
    of the same wire body is cellkit/core/parity.py's ParityCheck (the products never import each other)."""

    cell_id: str
    window_from: int
    window_to: int
    tolerance: Decimal
    orgs: tuple[OrgParity, ...]
    clean: bool
    signed_at: int  # the request's X-Timestamp: orders re-posts of the same window
    received_at: int = 0

    @property
    def max_drift(self) -> Decimal:
        return max((abs(o.drift) for o in self.orgs if o.drift is not None), default=Decimal(0))

    @property
    def worst_org(self) -> OrgParity | None:
        drifting = [o for o in self.orgs if o.drift is not None]
        return max(drifting, key=lambda o: abs(o.drift or Decimal(0)), default=None)


@dataclass(frozen=True)
class CellStatus:
    cell_id: str
    authority: Authority
    billers_running: bool
    billed_through: int  # every bucket starting before it was billed by the cell
    pending_billable: int  # events the cell has not sent to Stripe yet
    spool_depth: int
    signed_at: int
    reported_at: int  # edge clock when it arrived
    base_url: str | None = None  # where the edge pushes halt-org / resume-org (CONTRACT section 10)


def drift_exceeds(report: ParityReport) -> list[OrgParity]:
    """Orgs whose reported drift is above the report's own tolerance."""
    return [o for o in report.orgs if o.drift is not None and abs(o.drift) > report.tolerance]


