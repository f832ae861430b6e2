"""The emulator through the real stripe-python client: Stripe's documented rules, statefully."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import control, read

NOW = int(time.time())


def meter(sc: stripe.StripeClient, name: str = "m_1gb") -> Any:
    return sc.v1.billing.meters.create(
        {
            "display_name": name,
            "event_name": name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )


def send(
    sc: stripe.StripeClient,
    customer: str,
    ident: str,
    value: str = "1.5",
    name: str = "m_1gb",
    ts: int | None = None,
    key: str | None = None,
) -> Any:
    params = {
        "event_name": name,
        "identifier": ident,
        "timestamp": ts or NOW - 60,
        "payload": {"stripe_customer_id": customer, "value": value},
    }
    return sc.v1.billing.meter_events.create(params, options={"idempotency_key": key} if key else {})


@pytest.fixture(autouse=True)
def pinned_clock(emu: EmulatorServer) -> None:
    # NOW is read at import: pin the emulator to it so windows do not depend on how long the suite ran.
    control(emu, "clock", {"now": NOW})


@pytest.fixture
def cus(sc: stripe.StripeClient) -> str:
    meter(sc)
    return sc.v1.customers.create({"email": "a@example.com"}).id


def test_meters_created_and_listed(sc: stripe.StripeClient) -> None:
    m = meter(sc)
    assert m.id.startswith("mtr_") and [x.event_name for x in sc.v1.billing.meters.list().data] == ["m_1gb"]
    with pytest.raises(stripe.InvalidRequestError):
        meter(sc)


def test_meter_events_count_exactly(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    send(sc, cus, "a", "1.100000")
    send(sc, cus, "b", "2.200000")
    assert read(emu, "totals") == {"totals": {cus: {"m_1gb": "3.300000"}}, "events": 2}


def test_duplicate_identifier_is_stripes_400(sc: stripe.StripeClient, cus: str) -> None:
    send(sc, cus, "o:1:m")
    with pytest.raises(stripe.InvalidRequestError) as err:
        send(sc, cus, "o:1:m")
    assert err.value.http_status == 400
    assert err.value.user_message == "An event already exists with identifier o:1:m."


@pytest.mark.parametrize("offset", [-35 * 86400 - 60, 400], ids=["older-than-35-days", "over-5-minutes-ahead"])
def test_timestamp_window(sc: stripe.StripeClient, cus: str, offset: int) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Timestamp"):
        send(sc, cus, "x", ts=NOW + offset)


def test_unknown_event_name(sc: stripe.StripeClient, cus: str) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="No active meter"):
        send(sc, cus, "x", name="nope")


def test_settable_clock_moves_the_window(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    control(emu, "clock", {"now": 1_000_000})
    send(sc, cus, "old", ts=1_000_000 - 3600)
    control(emu, "clock", {"now": None})
    assert read(emu, "totals")["events"] == 1


def test_concurrent_call_same_customer_and_meter_is_429(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    meter(sc, "m_4gb")
    control(emu, "latency", {"latency_ms": 300})
    outcomes: dict[str, Any] = {}

    def first() -> None:
        outcomes["first"] = send(sc, cus, "slow-1")

    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.1)
    with pytest.raises(stripe.RateLimitError):
        send(sc, cus, "slow-2")
    send(sc, cus, "other-meter", name="m_4gb")  # another meter of the same customer is fine
    t.join()
    assert outcomes["first"].identifier == "slow-1"


def test_adjustment_cancels_within_24h(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    send(sc, cus, "c1", "5")
    sc.v1.billing.meter_event_adjustments.create(
        {"event_name": "m_1gb", "type": "cancel", "cancel": {"identifier": "c1"}}
    )
    assert read(emu, "totals")["events"] == 0
    send(sc, cus, "c2", "5")
    control(emu, "clock", {"now": NOW + 86400 + 10})
    with pytest.raises(stripe.InvalidRequestError, match="24 hours"):
        sc.v1.billing.meter_event_adjustments.create(
            {"event_name": "m_1gb", "type": "cancel", "cancel": {"identifier": "c2"}}
        )


def test_event_summaries_sum(sc: stripe.StripeClient, cus: str) -> None:
    m = sc.v1.billing.meters.list().data[0]
    send(sc, cus, "s1", "1.25", ts=NOW - 100)
    send(sc, cus, "s2", "2.5", ts=NOW - 50)
    out = sc.v1.billing.meters.event_summaries.list(
        m.id, {"customer": cus, "start_time": NOW - 1000, "end_time": NOW - 60}
    )
    assert out.data[0].aggregated_value == 1.25


def test_idempotency_key_replays_and_rejects_other_params(
    emu: EmulatorServer, sc: stripe.StripeClient, cus: str
) -> None:
    a = send(sc, cus, "i1", key="k")
    b = send(sc, cus, "i1", key="k")
    assert a.identifier == b.identifier and read(emu, "totals")["events"] == 1
    with pytest.raises(stripe.IdempotencyError):
        send(sc, cus, "i2", key="k")


def test_balance_transactions_add(sc: stripe.StripeClient) -> None:
    cid = sc.v1.customers.create({"balance": 500}).id
    sc.v1.customers.balance_transactions.create(cid, {"amount": -3000, "currency": "usd"})
    t = sc.v1.customers.balance_transactions.create(cid, {"amount": -3000, "currency": "usd"})
    assert t.ending_balance == -5500 and sc.v1.customers.retrieve(cid).balance == -5500


def test_subscriptions_with_items_and_prices_by_lookup_key(sc: stripe.StripeClient) -> None:
    m = meter(sc)
    prod = sc.v1.products.create({"name": "Compute"})
    p1 = sc.v1.prices.create(
        {
            "product": prod.id,
            "currency": "usd",
            "unit_amount_decimal": "0.0004",
            "lookup_key": "k1",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": m.id},
        }
    )
    assert [p.id for p in sc.v1.prices.list({"lookup_keys": ["k1"]}).data] == [p1.id]
    with pytest.raises(stripe.InvalidRequestError):
        sc.v1.prices.create({"product": prod.id, "currency": "usd", "lookup_key": "k1"})
    cid = sc.v1.customers.create({}).id
    sub = sc.v1.subscriptions.create({"customer": cid, "items": [{"price": p1.id}], "metadata": {"org_id": "o"}})
    assert sub["items"].data[0].price.id == p1.id and sub["items"].data[0].id.startswith("si_")
    assert [s.id for s in sc.v1.subscriptions.list({"customer": cid}).data] == [sub.id]
    sc.v1.subscriptions.cancel(sub.id)
    assert sc.v1.subscriptions.list({"customer": cid}).data == []


def test_faults(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    path = "/v1/billing/meter_events"
    control(emu, "faults", [{"path": path, "kind": "status", "status": 500}])
    with pytest.raises(stripe.APIError):
        send(sc, cus, "f1")
    control(emu, "faults", [{"path": path, "kind": "rate_limit", "retry_after": 7}])
    with pytest.raises(stripe.RateLimitError) as err:
        send(sc, cus, "f1")
    assert err.value.headers is not None and err.value.headers.get("retry-after") == "7"
    control(emu, "faults", [{"path": path, "kind": "slow", "delay_ms": 200}])
    started = time.monotonic()
    send(sc, cus, "f1")
    assert time.monotonic() - started >= 0.2
    control(emu, "faults", [{"path": path, "kind": "accept_then_drop"}])
    with pytest.raises(stripe.APIConnectionError):
        send(sc, cus, "f2")
    assert read(emu, "totals")["events"] == 2  # f1 and the dropped-but-accepted f2


def test_a_500_is_kept_under_its_key_and_replayed_as_stripe_does(emu: EmulatorServer, cus: str) -> None:
    retrying = stripe.StripeClient("sk_test_emulator", base_addresses={"api": emu.url}, max_network_retries=2)
    control(emu, "faults", [{"path": "/v1/billing/meter_events", "kind": "status", "status": 500}])
    with pytest.raises(stripe.APIError) as caught:
        send(retrying, cus, "r1")
    # stripe-python retried twice with the same key: both answered with the stored 500, marked replayed.
    assert caught.value.http_status == 500
    assert (caught.value.headers or {}).get("idempotent-replayed") == "true"
    assert read(emu, "requests")["requests"]["POST /v1/billing/meter_events"] == 3
    assert read(emu, "totals")["events"] == 0


def test_the_gateway_gets_past_a_stored_500_with_a_fresh_key(emu: EmulatorServer, cus: str) -> None:
    from chalicelib.adapters.stripe_gateway import StripeClientGateway
    from chalicelib.core.meter_events import MeterEvent, Outcome

    client = stripe.StripeClient("sk_test_emulator", base_addresses={"api": emu.url}, max_network_retries=0)
    gateway = StripeClientGateway(client)
    control(emu, "faults", [{"path": "/v1/billing/meter_events", "kind": "status", "status": 500}])
    event = MeterEvent("m_1gb", "r2", cus, "2.000000", NOW - 60)
    assert gateway.send_meter_event(event).outcome is Outcome.RETRY, "the first 500 is a plain retry"
    assert gateway.send_meter_event(event).outcome is Outcome.SENT, "its replay is answered by a fresh key"
    assert gateway.send_meter_event(event).outcome is Outcome.DUPLICATE, "and the identifier still dedupes"
    assert read(emu, "totals")["events"] == 1


def test_missing_api_key_is_401(emu: EmulatorServer) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{emu.url}/v1/customers")
    assert err.value.code == 401


def test_reset_clears_everything(emu: EmulatorServer, sc: stripe.StripeClient, cus: str) -> None:
    send(sc, cus, "z")
    control(emu, "reset", {})
    assert read(emu, "totals") == {"totals": {}, "events": 0} and sc.v1.billing.meters.list().data == []


def test_webhook_endpoints_created_listed_disabled_deleted(sc: stripe.StripeClient) -> None:
    events = ["checkout.session.completed", "customer.subscription.deleted"]
    made = sc.v1.webhook_endpoints.create({"url": "https://edge/api/webhooks/stripe", "enabled_events": events})
    assert made.status == "enabled" and made.secret.startswith("whsec_")
    [listed] = sc.v1.webhook_endpoints.list().data
    assert listed.id == made.id and list(listed.enabled_events) == events
    assert sc.v1.webhook_endpoints.update(made.id, {"disabled": True}).status == "disabled"
    sc.v1.webhook_endpoints.delete(made.id)
    assert sc.v1.webhook_endpoints.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        sc.v1.webhook_endpoints.create({"url": "https://x"})
