"""Stripe's meter error reports, emulated: accept a meter event the meter cannot apply, then report it.

Stripe validates a meter event's customer mapping after it has answered 200 and reports the events it
could not apply as a `v1.billing.meter.error_report_triggered` thin event to each event destination
(signed as webhooks are: `Stripe-Signature: t=...,v1=HMAC-SHA256(secret, "{t}.{body}")`); the full
report is read from `GET /v2/core/events/{id}`. Here a customer the emulator does not hold is such an
event, once an event destination is registered (`POST /_emulator/event_destinations {"url", "secret"}`:
without one nothing would hear the report, and older callers send to customers they never created).
The identifier stays taken, as Stripe keeps identifiers unique for 24 h: a re-send needs a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

ERROR_REPORT = "v1.billing.meter.error_report_triggered"
DELIVERY_ATTEMPTS = 20


@dataclass(frozen=True)
class Destination:
    url: str | None
    secret: str


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def signature(payload: bytes, secret: str, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def post(url: str, payload: bytes, secret: str) -> None:
    """Deliver as Stripe does: retried with back-off until a 2xx (the app may be busy or restarting)."""
    for attempt in range(DELIVERY_ATTEMPTS):
        headers = {"Content-Type": "application/json", "Stripe-Signature": signature(payload, secret, int(time.time()))}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, payload, headers), timeout=30) as res:
                if 200 <= res.status < 300:
                    return
        except OSError:
            pass
        time.sleep(min(5.0, 0.25 * 2**attempt))


@dataclass
class Reports:
    destinations: list[Destination] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # full v2 events by id
    unapplied: dict[str, tuple[str, str, Decimal]] = field(default_factory=dict)  # identifier -> (name, cus, value)
    deliveries: list[dict[str, str]] = field(default_factory=list)  # every thin event, signed, for inspection

    @property
    def active(self) -> bool:
        return bool(self.destinations)

    def register(self, url: str | None, secret: str) -> dict[str, Any]:
        self.destinations.append(Destination(url or None, secret))
        return {"destinations": len(self.destinations)}

    def unappliable(self, meter: dict[str, Any], name: str, customer: str, value: Decimal, ts: int,
                    identifier: str, now: int) -> dict[str, Any]:
        """The 200 Stripe answers, then the report it sends later."""
        self.unapplied[identifier] = (name, customer, value)
        event_id = f"evt_test_{secrets.token_hex(12)}"
        message = f"No customer found for stripe_customer_id {customer}."
        thin = {"id": event_id, "object": "v2.core.event", "type": ERROR_REPORT, "created": iso(now),
                "livemode": False, "context": None,
                "related_object": {"id": meter["id"], "type": "billing.meter",
                                   "url": f"/v1/billing/meters/{meter['id']}"}}
        self.events[event_id] = thin | {"data": {
            "developer_message_summary": "There is 1 invalid event",
            "reason": {"error_count": 1, "error_types": [{
                "code": "meter_event_customer_not_found", "error_count": 1,
                "sample_errors": [{"error_message": message, "request": {"identifier": identifier}}]}]},
            "validation_start": iso(now), "validation_end": iso(now + 10)}}
        payload = json.dumps(thin).encode()
        for d in self.destinations:
            signed = signature(payload, d.secret, int(time.time()))
            self.deliveries.append({"payload": payload.decode(), "signature": signed, "url": d.url or ""})
            if d.url:
                threading.Thread(target=post, args=(d.url, payload, d.secret), daemon=True,
                                 name="stripe-event-delivery").start()
        return {"object": "billing.meter_event", "event_name": name, "identifier": identifier, "timestamp": ts,
                "payload": {"stripe_customer_id": customer, "value": str(value)}, "created": now, "livemode": False}

    def event(self, event_id: str) -> dict[str, Any]:
        from stripe_emulator.objects import StripeFailure

        if event_id not in self.events:
            raise StripeFailure(404, f"No such event: '{event_id}'", code="resource_missing")
        return self.events[event_id]
