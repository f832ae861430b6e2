"""The metrics an operator alarms on, as the EMF lines Powertools prints (what CloudWatch ingests)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.telemetry import rollup_points
from chalicelib.services.operator_metrics import after_rollup
from chalicelib.services.rollup import run_rollup
from sim.api import stripe_signature
from tests.conftest import BASE_ENV, T0, iso, signed_post, tick

H = 3600


def emf(out: str) -> list[dict[str, Any]]:
    """Every metric in the captured EMF lines: name, value, dimensions."""
    found = []
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        doc = json.loads(line)
        meta = doc["_aws"]["CloudWatchMetrics"][0]
        assert meta["Namespace"] == "EdgeBilling"
        for m in meta["Metrics"]:
            dims = {d: doc[d] for d in meta["Dimensions"][0]}
            value = doc[m["Name"]]
            found.append({"name": m["Name"], "value": value[0] if isinstance(value, list) else value, "dims": dims})
    return found


def test_after_rollup_publishes_run_outbox_age_and_missing_reports(
    svc: Container, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    clock.set(T0 + 5 * H)
    svc.store.create_outbox_rows([OutboxRow("o:1", "o", T0, T0 + H, "m", Decimal(1), "first", "pending")])
    now = svc.now()
    svc.cells().put_cell_status(CellStatus("cell-a", "cell", True, T0, 0, 0, now, now))
    run = {"ok": True, "roll": {"unbilled": [{"memory_mb": 3000, "seconds": "20.5"}],
                                "late": {"samples": 4, "waiting": 1, "unbilled": []}},
           "send": {"failed": 2, "waitingNoCustomer": 3, "unbillable": 0}}
    after_rollup(svc, run)
    got = {(m["name"], m["dims"].get("cell_id")): m for m in emf(capsys.readouterr().out)}
    assert got[("MeterEventsRejected", None)]["value"] == 2
    assert got[("RowsWaitingForCustomer", None)]["value"] == 3
    assert got[("UnbilledMemorySizes", None)]["value"] == 1
    assert got[("UnbilledMemorySeconds", None)]["value"] == 20.5
    assert got[("StragglerSamples", None)]["value"] == 4
    assert got[("OutboxAgeSeconds", None)]["value"] == 4 * H
    assert got[("ParityReportsMissing", "cell-a")]["value"] == 1
    assert got[("ParityReportsMissing", None)]["value"] == 1
    assert got[("OutboxAgeSeconds", None)]["dims"] == {"service": "edge-billing", "environment": "dev"}


def test_shadow_run_publishes_no_send_metrics(svc: Container, capsys: pytest.CaptureFixture[str]) -> None:
    after_rollup(svc, {"ok": True, "roll": {}, "send": None})
    names = {m["name"] for m in emf(capsys.readouterr().out)}
    assert "MeterEventsRejected" not in names and "OutboxAgeSeconds" in names


def test_parity_report_publishes_drift_per_cell(client: Any, svc: Container,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    body = {"cell_id": "cell-eu", "window": {"from": T0, "to": T0 + H}, "tolerance": 0.02, "clean": False,
            "orgs": [{"org_id": "a", "cell_gb_seconds": 100, "edge_gb_seconds": 97, "drift": -0.03}]}
    assert client.http.post("/internal/parity-reports", **signed_post(body, svc.now(), cell_id=None)).status_code == 200
    got = {(m["name"], m["dims"].get("cell_id")): m["value"] for m in emf(capsys.readouterr().out)}
    assert got[("ParityDriftPercent", "cell-eu")] == 3.0 and got[("ParityDriftPercent", None)] == 3.0
    assert got[("ParityDriftingOrgs", "cell-eu")] == 1


def test_webhook_answers_are_counted_by_the_middleware(client: Any, svc: Container,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    res = client.http.post("/webhooks/stripe", body=b"{}", headers={"Content-Type": "application/json",
                                                                     "Stripe-Signature": "t=1,v1=bad"})
    assert res.status_code == 400
    assert [m["name"] for m in emf(capsys.readouterr().out)] == ["WebhookRejected"]


def test_an_unusable_event_is_counted_by_the_middleware(client: Any, svc: Container,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    event = {"id": "evt_odd", "type": "customer.subscription.deleted", "created": "yesterday",
             "data": {"object": {"id": "sub_1", "customer": "cus_1", "metadata": {"org_id": "org1"}}}}
    payload = json.dumps(event).encode()
    signature = stripe_signature(payload, BASE_ENV["STRIPE_WEBHOOK_SECRET"], svc.now())
    res = client.http.post("/webhooks/stripe", body=payload,
                           headers={"Content-Type": "application/json", "Stripe-Signature": signature})
    assert res.status_code == 200 and "created" in res.json_body["unusable"]
    assert [m["name"] for m in emf(capsys.readouterr().out)] == ["WebhookUnusable"]


def test_rollup_points_read_what_a_real_run_answers(client: Any, svc: Container, clock: FixedClock) -> None:
    # Guards the coupling to RunResult.body(): a renamed key would silently report zero here.
    svc.store.put_org(Org("org-a", plan="pro"))
    clock.set(T0 + 200)
    ticks = [tick("u1", "org-a", iso(T0 + 100), memory_mb=3000), tick("u2", "org-a", iso(T0 + 120))]
    assert client.http.post("/ingest", **signed_post(ticks, svc.now())).status_code == 202
    clock.set(T0 + 2 * H)
    points = {p.name: p.value for p in rollup_points(run_rollup(svc, trigger="test").body())}
    assert points["UnbilledMemorySizes"] == 1 and points["UnbilledMemorySeconds"] == 20.0
