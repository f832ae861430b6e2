"""Cell status (CONTRACT section 8): what the cutover's drain-check and verify read from every cell."""

from __future__ import annotations

from typing import Any

from cellkit.ports import CellStore, EdgeApi, TransportError
from cellkit.services.billers import billed_through

CELLS_PATH = "/internal/cells/"


class StatusError(RuntimeError):
    pass


def status_body(store: CellStore, authority: str, billers_running: bool, now_s: int,
                width: int = 3600) -> dict[str, Any]:
    return {
        "authority": authority,
        "billers_running": billers_running,
        "billed_through": billed_through(store, now_s, width),
        # Every settled row not yet sent to Stripe: pending, and failed (refused; a person must look). The
        # cutover's drain-check waits for 0, so a row stranded either way holds it up rather than vanishing.
        "pending_billable": store.count_billable("pending") + store.count_billable("failed"),
        "spool_depth": store.spool_depth(),
    }


def push_status(edge: EdgeApi, body: dict[str, Any]) -> int:
    try:
        resp = edge.put_json(CELLS_PATH + edge.cell_id, body)
    except TransportError as exc:
        raise StatusError(f"cell status unreachable: {exc}") from None
    if resp.status not in (200, 201, 202, 204):
        raise StatusError(f"cell status answered {resp.status}: {resp.body[:200]!r}")
    return resp.status
