"""Parity reports and cell status, posted to the fake edge (HMAC verified by the edge's code)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.memory import MemoryStore
from cellkit.core.parity import compare, last_settled_window
from cellkit.core.usage import OrgRow, ScaleEvent
from cellkit.services.parity import ParityChecker, ParityError
from cellkit.services.status import push_status, status_body
from tests.cellkit.conftest import SECRET, T0, T0_US, Captured
from tests.cellkit.fake_edge import FakeEdge

US = 1_000_000
H = 3600


def client(edge: FakeEdge, clock: ManualClock) -> EdgeClient:
    return EdgeClient(edge.url + "/", SECRET, "cell-a", UrllibTransport(), clock, timeout=2)


def test_last_settled_window() -> None:
    assert last_settled_window(T0 + 2 * H + 599, 600) == (T0, T0 + H)
    assert last_settled_window(T0 + 2 * H + 600, 600) == (T0 + H, T0 + 2 * H)


def test_compare_clips_both_edges_unions_orgs_skips_free() -> None:
    orgs = {"a": OrgRow("a", "pro"), "b": OrgRow("b", "pro"), "f": OrgRow("f", "free")}
    events = [
        ScaleEvent("1", "s1", "a", 2048, 1, (T0 - 600) * US, (T0 + 600) * US),  # 600 s in the window
        ScaleEvent("2", "s2", "a", 1024, 1, (T0 + H - 300) * US, (T0 + H + 900) * US),  # 300 s in the window
        ScaleEvent("3", "s3", "f", 1024, 1, T0 * US, None),
        ScaleEvent("4", "s4", "b", 1024, 1, (T0 + 100) * US, None),  # open: clipped at the window end
    ]
    edge = {"a": Decimal("1500"), "c": Decimal("10"), "f": Decimal(0)}
    report = compare("cell-a", (T0, T0 + H), events, edge, orgs, (T0 + 2 * H) * US, Decimal("0.02"))
    got = {o.org_id: (o.cell_gb_seconds, o.edge_gb_seconds, o.drift) for o in report.orgs}
    assert got == {
        "a": (Decimal(1500), Decimal(1500), Decimal(0)),
        "b": (Decimal(H - 100), Decimal(0), Decimal(-1)),
    }
    assert report.skipped_free == ("f",)
    assert report.skipped_elsewhere == ("c",)  # only the edge saw it and the cell has no row: another cell's
    assert not report.clean
    within = compare("cell-a", (T0, T0 + H), events[:2], {"a": Decimal("1529.9")}, orgs, 0, Decimal("0.02"))
    assert within.clean and within.orgs[0].drift == Decimal("0.019933")


def test_checker_posts_the_contract_body(
    edge: FakeEdge, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.put_org(OrgRow("a", "pro"))
    store.put_org(OrgRow("f", "free"))
    with store.transaction() as tx:
        tx.open_scale_event(ScaleEvent("1", "s1", "a", 4096, 1, (T0 - 60) * US, (T0 + 900) * US))
        tx.open_scale_event(ScaleEvent("2", "s2", "f", 1024, 1, T0 * US, None))
    edge.state.parity[(T0, T0 + H)] = {"a": 3700.5}
    clock.set(T0_US + (2 * H + 600) * US)
    checker = ParityChecker(store, client(edge, clock), clock, log[0])
    report = checker.check()
    assert (report.window_from, report.window_to) == (T0 + H, T0 + 2 * H)
    report = checker.check((T0, T0 + H))
    assert edge.state.get_paths[-1] == f"/internal/usage-parity?from={T0}&to={T0 + H}"
    posted = edge.state.parity_reports[("cell-a", T0, T0 + H)]
    assert posted == {"cell_id": "cell-a", "window": {"from": T0, "to": T0 + H}, "tolerance": 0.02,
                      "orgs": [{"org_id": "a", "cell_gb_seconds": 3600.0, "edge_gb_seconds": 3700.5,
                                "drift": 0.027917}],
                      "clean": False}
    (drift,) = log[1].events("parity_drift")
    assert drift.org_id == "a"  # type: ignore[attr-defined]
    edge.stop()
    with pytest.raises(ParityError):
        checker.check((T0, T0 + H))


def test_status_is_put_per_contract(edge: FakeEdge, clock: ManualClock) -> None:
    store = MemoryStore()
    assert status_body(store, "edge", False, T0 + 5000)["billed_through"] == T0 + 3600  # idle: owes nothing
    store.set_cursor("billed_through", T0)
    body = status_body(store, "edge", False, T0 + 5000)
    assert push_status(client(edge, clock), body) == 200
    assert edge.state.cells["cell-a"] == {"authority": "edge", "billers_running": False, "billed_through": T0,
                                          "pending_billable": 0, "spool_depth": 0}
