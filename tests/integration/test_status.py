"""The operator's status (CONTRACT 11): the JSON keys, the parity grid with its gaps, stale cells, the
seam once armed, the rollup's lag, the outbox's queues, and the page rendering the same data."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.operator import MemoryFreeStatus, MemoryMeterErrors
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.entrypoints.status_page import render
from chalicelib.services.status import status
from chalicelib.settings import load_settings
from tests.conftest import T0, written_once

H = 3600
NOW = T0 + 30 * H


def report(cell: str, start: int, drift: str = "0") -> ParityReport:
    org = OrgParity("acme", Decimal(100), Decimal(100), Decimal(drift))
    return ParityReport(cell, start, start + H, Decimal("0.02"), (org,), abs(Decimal(drift)) <= Decimal("0.02"),
                        signed_at=start + 2 * H)


@pytest.fixture
def seeded(svc: Container, clock: FixedClock) -> Container:
    """Two cells, a day of parity reports with a gap and a drift, outbox rows, quarantine and the rollup's
    cursor: written through the ports by a worker's first test (~50 conditional puts), restored after."""
    clock.set(NOW)

    def write() -> None:
        cells = svc.cells()
        cells.put_cell_status(CellStatus("cell-a", "cell", True, T0 + 20 * H, 3, 7, NOW - 60, NOW - 60))
        cells.put_cell_status(CellStatus("cell-b", "edge", False, T0 + 20 * H, 0, 0, NOW - 4000, NOW - 4000))
        end = (NOW - 600 - H) // H * H
        for b in range(end - 24 * H, end, H):
            cells.put_parity_report(report("cell-a", b, "0.05" if b == end - H else "0"))
            if b != end - 3 * H:  # a gap
                cells.put_parity_report(report("cell-b", b))
        svc.store.create_outbox_rows([
            OutboxRow("acme:1:m", "acme", T0 + 25 * H, T0 + 26 * H, "m", Decimal(1), "first", "pending"),
            OutboxRow("acme:2:m", "acme", T0 + 26 * H, T0 + 27 * H, "m", Decimal(1), "first", "failed")])
        svc.store.put_quarantine([QuarantineItem("q1", "invalid", "bad", "cell-a", "{}", NOW)])
        svc.store.advance_cursor("rollup", T0 + 29 * H)

    written_once("status-seeded", write)
    return svc


def test_the_status_has_the_contracts_keys_and_says_what_the_stage_holds(seeded: Container) -> None:
    free = MemoryFreeStatus(halted=["tiny"], balances={"tiny": Decimal("0.00"), "big": Decimal("4.50")})
    got = status(seeded, MemoryMeterErrors(), free)
    assert {"stage", "shadow", "bill_from", "bucket_seconds", "as_of", "cells", "parity", "rollup", "outbox",
            "quarantine", "meter_errors", "free"} <= set(got)
    assert (got["stage"], got["shadow"], got["as_of"]) == ("dev", True, NOW)
    a, b = got["cells"]
    assert (a["cell_id"], a["stale"], a["spool_depth"], a["pending_billable"]) == ("cell-a", False, 7, 3)
    assert (b["cell_id"], b["stale"], b["authority"]) == ("cell-b", True, "edge")
    grid = got["parity"]
    assert len(grid) == 2 * 24 and set(grid[0]) >= {"cell_id", "bucket_start"}
    gaps = [p for p in grid if p.get("missing")]
    assert [(p["cell_id"], p["bucket_start"]) for p in gaps] == [("cell-b", got["soak"]["to"] - 3 * H)]
    drifting = [p for p in grid if not p.get("missing") and not p["clean"]]
    assert [(p["cell_id"], p["max_drift"]) for p in drifting] == [("cell-a", "0.05")]
    assert got["rollup"] == {"last_settled_bucket": T0 + 28 * H, "lag_seconds": NOW - (T0 + 29 * H)}
    assert got["outbox"] == {"pending": 1, "failed": 1, "oldest_pending_age_seconds": NOW - (T0 + 26 * H),
                             "capped": False}
    assert got["quarantine"] == 1 and got["seam"] == []
    assert got["free"] == {"halted_orgs": ["tiny"], "lowest_balances": [{"org_id": "tiny", "balance": "0.00"},
                                                                        {"org_id": "big", "balance": "4.50"}]}


def test_once_armed_the_seam_says_who_billed_each_bucket(seeded: Container, env: dict[str, str]) -> None:
    seeded.settings = load_settings(env | {"SHADOW": "false", "BILL_FROM": str(T0 + 20 * H)})
    got = status(seeded, MemoryMeterErrors(), MemoryFreeStatus())
    verdicts = {v["bucket_start"]: v["verdict"] for v in got["seam"]}
    assert verdicts[T0 + 19 * H] == "cell" and verdicts[T0 + 20 * H] == "edge"
    assert "both" not in verdicts.values()


def test_the_page_renders_every_section_without_script_and_for_a_phone(seeded: Container) -> None:
    page = render(status(seeded, MemoryMeterErrors(), MemoryFreeStatus(halted=["tiny<b>"])))
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    assert 'name="viewport"' in page and "<script" not in page
    for section in ("cells", "parity", "seam", "rollup", "meter-errors", "free"):
        assert f'id="{section}"' in page
    assert page.count("<svg") == 2 and "(stale)" in page
    assert "tiny&lt;b&gt;" in page and "tiny<b>" not in page, "every value is escaped"
    assert re.search(r'aria-label="parity of cell-b: 23 clean, 0 drifting, 1 missing"', page)


def test_the_routes_answer_html_and_json(client: Any, seeded: Container) -> None:
    html = client.http.get("/ops/status")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    data = client.http.get("/ops/status.json")
    assert data.status_code == 200 and data.json_body["cells"][0]["cell_id"] == "cell-a"
