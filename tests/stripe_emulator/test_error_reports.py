"""The emulator's meter error reports: accepted, not applied, reported to the event destination as a
thin event stripe-python verifies and fetches."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import control

SECRET = "whsec_destination"


@pytest.fixture
def destination() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    got: list[tuple[bytes, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200 if len(got) > 1 else 503)  # the first delivery fails: it is retried
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/events", got
    server.shutdown()


def test_an_unmappable_customer_is_accepted_then_reported(
    emu: EmulatorServer, sc: stripe.StripeClient, destination: tuple[str, list[tuple[bytes, str]]]
) -> None:
    url, got = destination
    sc.v1.billing.meters.create({"display_name": "GB", "event_name": "gb", "default_aggregation": {"formula": "sum"}})
    control(emu, "event_destinations", {"url": url, "secret": SECRET})
    sc.v1.billing.meter_events.create({"event_name": "gb", "identifier": "id-1",
                                       "payload": {"stripe_customer_id": "cus_nobody", "value": "5"}})
    assert emu.state.totals() == {}
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):  # the identifier stays taken
        sc.v1.billing.meter_events.create({"event_name": "gb", "identifier": "id-1",
                                           "payload": {"stripe_customer_id": "cus_nobody", "value": "5"}})
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    body, signature = got[-1]
    note = sc.parse_event_notification(body, signature, SECRET)
    assert note.type == "v1.billing.meter.error_report_triggered"
    event = sc.v2.core.events.retrieve(note.id).to_dict()
    (sample,) = event["data"]["reason"]["error_types"][0]["sample_errors"]
    assert sample["request"]["identifier"] == "id-1"
    with pytest.raises(stripe.InvalidRequestError):
        sc.v2.core.events.retrieve("evt_missing")
