"""Stripe's meter error reports end to end (issue 20): a meter event the emulator accepts and later
reports -> the outbox row marked not billed, the metric counted, the status page showing it, and the
re-send after the fix billing it exactly once (twice run, still once)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, first_identifier
from chalicelib.services.meter_errors import resend
from chalicelib.services.sender import send_pending
from tests.conftest import T0
from tests.integration.test_metrics import emf

H = 3600
EVENTS_SECRET = "whsec_events_test"


@pytest.fixture
def live(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in {"SHADOW": "false", "STRIPE_API_BASE": emulator.url, "STRIPE_EVENTS_SECRET": EVENTS_SECRET,
                       "STRIPE_MAX_NETWORK_RETRIES": "0"}.items():
        monkeypatch.setenv(key, value)
        env[key] = value
    return env


def deliver(client: Any, delivery: dict[str, str]) -> Any:
    return client.http.post("/webhooks/stripe/events", body=delivery["payload"].encode(),
                            headers={"Content-Type": "application/json", "Stripe-Signature": delivery["signature"]})


def test_a_reported_meter_event_is_marked_counted_shown_and_resent_once(
    live: dict[str, str], emulator: Any, svc: Container, client: Any, clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = emulator.state
    state.fixed_now = clock.now()
    meter = state.create_meter({"event_name": "gb_seconds_4gb", "display_name": "4 GB"})
    good = state.create_customer({"name": "acme"})["id"]
    state.reports.register(None, EVENTS_SECRET)  # an event destination (delivered by hand below)
    svc.store.put_org(Org("acme", billing_mode="legacy", plan="pro", stripe_customer_id="cus_typo"))
    row = OutboxRow(first_identifier("acme", T0, "gb_seconds_4gb"), "acme", T0, T0 + H, "gb_seconds_4gb",
                    Decimal("12.5"), "first", "pending")
    svc.store.create_outbox_rows([row])

    report = send_pending(svc.store, svc.stripe_gateway(), svc.settings, clock, "run-1")
    assert report.counts["sent"] == 1, "Stripe answered 200: the row is sent"
    assert state.totals() == {}, "...but the emulator could not apply it"
    (delivery,) = state.reports.deliveries
    capsys.readouterr()

    res = deliver(client, delivery)
    assert res.status_code == 200, res.json_body
    assert res.json_body["marked"] == [row.id] and res.json_body["new"] is True
    metrics = [m for m in emf(capsys.readouterr().out) if m["name"] == "MeterEventErrors"]
    assert [m["value"] for m in metrics] == [1]
    marked = svc.store.get_outbox_row(row.id)
    assert marked is not None and marked.state == "failed" and "meter_event_customer_not_found" in (marked.detail or "")

    again = deliver(client, delivery)  # Stripe redelivers: nothing changes, nothing counted twice
    assert again.status_code == 200 and again.json_body["new"] is False
    assert not [m for m in emf(capsys.readouterr().out) if m["name"] == "MeterEventErrors"]

    status = client.http.get("/ops/status.json").json_body
    assert status["outbox"]["failed"] == 1
    (shown,) = status["meter_errors"]
    assert shown["marked"] == [row.id] and shown["errors"][0]["code"] == "meter_event_customer_not_found"
    assert shown["meter_id"] == meter["id"]
    page = client.http.get("/ops/status").body.decode()
    assert row.id in page and "meter_event_customer_not_found" in page

    svc.store.update_org("acme", {"stripe_customer_id": good}, clock.now())  # the operator's fix
    first = resend(svc.store, svc.meter_errors(), clock.now())
    second = resend(svc.store, svc.meter_errors(), clock.now())
    assert len(first["resent"]) == 1 and second["resent"] == []
    send_pending(svc.store, svc.stripe_gateway(), svc.settings, clock, "run-2")
    send_pending(svc.store, svc.stripe_gateway(), svc.settings, clock, "run-3")
    assert state.totals() == {good: {"gb_seconds_4gb": "12.500000"}}, "billed once, to the fixed customer"
    assert svc.store.get_outbox_row(row.id).state == "resent"  # type: ignore[union-attr]
    assert client.http.get("/ops/status.json").json_body["outbox"]["failed"] == 0


def test_a_thin_event_with_a_bad_signature_is_refused(live: dict[str, str], svc: Container, client: Any) -> None:
    payload = json.dumps({"id": "evt_x", "object": "v2.core.event", "type": "v1.billing.meter.no_meter_found",
                          "created": "2026-11-25T00:00:00.000Z"})
    res = client.http.post("/webhooks/stripe/events", body=payload.encode(),
                           headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"})
    assert res.status_code == 400 and "signature" in res.json_body["error"]
    assert client.http.post("/webhooks/stripe/events", body=payload.encode(),
                            headers={"Content-Type": "application/json"}).status_code == 400
