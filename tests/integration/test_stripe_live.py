"""The same send path against Stripe's test mode; runs only with STRIPE_TEST_API_KEY set."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import stripe

from chalicelib.adapters.stripe_gateway import StripeClientGateway, classify
from chalicelib.core.meter_events import MeterEvent, Outcome
from chalicelib.core.pricing import TIERS

pytestmark = pytest.mark.stripe_live


def test_meter_event_send_and_duplicate_in_test_mode() -> None:
    client = stripe.StripeClient(os.environ["STRIPE_TEST_API_KEY"], max_network_retries=2)
    meter_name = TIERS[1024].meter
    if not [
        m for m in client.v1.billing.meters.list({"status": "active"}).auto_paging_iter() if m.event_name == meter_name
    ]:
        client.v1.billing.meters.create(
            {
                "display_name": meter_name,
                "event_name": meter_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            }
        )
    customer = client.v1.customers.create({"description": "edge-billing live test"}).id
    gateway = StripeClientGateway(client)
    event = MeterEvent(meter_name, f"live-test:{uuid.uuid4().hex}", customer, "1.500000", int(time.time()) - 60)
    assert gateway.send_meter_event(event).outcome is Outcome.SENT
    # A retry with the same idempotency key replays; a new key with the same identifier is Stripe's duplicate.
    assert gateway.send_meter_event(event).outcome is Outcome.SENT
    again = stripe.StripeClient(os.environ["STRIPE_TEST_API_KEY"], max_network_retries=0)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        again.v1.billing.meter_events.create(
            {
                "event_name": meter_name,
                "identifier": event.identifier,
                "timestamp": event.timestamp,
                "payload": {"stripe_customer_id": customer, "value": "1.5"},
            }
        )
    assert classify(caught.value).outcome is Outcome.DUPLICATE
