"""The emulator's state and Stripe's rules, independent of HTTP."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_emulator.accounts import AccountsState
from stripe_emulator.objects import StripeFailure, new_id
from stripe_emulator.reports import Reports

BACKDATE_SECONDS = 35 * 86400
FUTURE_SECONDS = 300
ADJUST_WINDOW_SECONDS = 86400


@dataclass
class MeterEventRecord:
    identifier: str
    event_name: str
    customer: str
    value: Decimal
    timestamp: int
    received: int
    cancelled: bool = False


@dataclass
class State(AccountsState):
    lock: threading.RLock = field(default_factory=threading.RLock)
    fixed_now: int | None = None
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance_txns: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, MeterEventRecord] = field(default_factory=dict)
    webhook_endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: set[tuple[str, str]] = field(default_factory=set)
    reports: Reports = field(default_factory=Reports)  # meter error reports (reports.py)

    # --- meters -------------------------------------------------------------
    def create_meter(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("event_name")
        if not name or not p.get("display_name"):
            raise StripeFailure(400, "Missing required param: event_name/display_name.", code="parameter_missing")
        if any(m["event_name"] == name and m["status"] == "active" for m in self.meters.values()):
            raise StripeFailure(400, f"A meter with event_name {name} already exists.", code="resource_already_exists")
        meter = {
            "id": new_id("mtr"),
            "object": "billing.meter",
            "event_name": name,
            "display_name": p["display_name"],
            "status": "active",
            "default_aggregation": p.get("default_aggregation", {"formula": "sum"}),
            "customer_mapping": p.get("customer_mapping", {"event_payload_key": "stripe_customer_id", "type": "by_id"}),
            "value_settings": p.get("value_settings", {"event_payload_key": "value"}),
            "event_time_window": None,
            "created": self.now(),
            "livemode": False,
        }
        self.meters[meter["id"]] = meter
        return meter

    def meter(self, meter_id: str) -> dict[str, Any]:
        if meter_id not in self.meters:
            raise StripeFailure(404, f"No such billing meter: '{meter_id}'", code="resource_missing")
        return self.meters[meter_id]

    def meter_by_event(self, event_name: str) -> dict[str, Any] | None:
        return next(
            (m for m in self.meters.values() if m["event_name"] == event_name and m["status"] == "active"), None
        )

    # --- meter events ---------------------------------------------------------
    def check_meter_event(self, p: dict[str, Any]) -> tuple[str, str, Decimal, int, str]:
        name = p.get("event_name", "")
        if self.meter_by_event(name) is None:
            raise StripeFailure(400, f"No active meter found for event_name {name}.", code="resource_missing")
        payload = p.get("payload") or {}
        customer = payload.get("stripe_customer_id")
        if not customer:
            raise StripeFailure(400, "payload[stripe_customer_id] is required.", code="parameter_missing")
        try:
            value = Decimal(str(payload.get("value")))
            if not value.is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            raise StripeFailure(400, f"payload[value] {payload.get('value')!r} is not a number.") from None
        try:
            ts = int(p.get("timestamp", self.now()))
        except ValueError:
            raise StripeFailure(400, "timestamp must be an integer.") from None
        now = self.now()
        if ts < now - BACKDATE_SECONDS:
            raise StripeFailure(
                400, "Timestamp must be within the past 35 calendar days.", code="timestamp_too_far_in_past"
            )
        if ts > now + FUTURE_SECONDS:
            raise StripeFailure(
                400, "Timestamp must not be more than 5 minutes in the future.", code="timestamp_in_future"
            )
        identifier = p.get("identifier") or new_id("evt_ident")
        return name, customer, value, ts, identifier

    def record_meter_event(self, name: str, customer: str, value: Decimal, ts: int, identifier: str) -> dict[str, Any]:
        if identifier in self.events or identifier in self.reports.unapplied:
            raise StripeFailure(
                400, f"An event already exists with identifier {identifier}.", code="resource_already_exists"
            )
        if self.reports.active and customer not in self.customers:
            meter = self.meter_by_event(name) or {}
            return self.reports.unappliable(meter, name, customer, value, ts, identifier, self.now())
        self.events[identifier] = MeterEventRecord(identifier, name, customer, value, ts, self.now())
        return {
            "object": "billing.meter_event",
            "event_name": name,
            "identifier": identifier,
            "timestamp": ts,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
            "created": self.now(),
            "livemode": False,
        }

    def adjust(self, p: dict[str, Any]) -> dict[str, Any]:
        identifier = (p.get("cancel") or {}).get("identifier")
        if p.get("type", "cancel") != "cancel" or not identifier:
            raise StripeFailure(400, "Only type=cancel with cancel[identifier] is supported.")
        event = self.events.get(identifier)
        if event is None or event.event_name != p.get("event_name"):
            raise StripeFailure(400, f"No meter event with identifier {identifier}.", code="resource_missing")
        if self.now() - event.received > ADJUST_WINDOW_SECONDS:
            raise StripeFailure(400, "Meter events can only be cancelled within 24 hours of receipt.")
        event.cancelled = True
        return {
            "id": new_id("mtradj"),
            "object": "billing.meter_event_adjustment",
            "event_name": event.event_name,
            "type": "cancel",
            "cancel": {"identifier": identifier},
            "status": "pending",
            "livemode": False,
        }

    def summaries(self, meter_id: str, q: dict[str, Any]) -> list[dict[str, Any]]:
        meter = self.meter(meter_id)
        start, end = int(q.get("start_time", 0)), int(q.get("end_time", 2**40))
        total = sum(
            (
                e.value
                for e in self.events.values()
                if not e.cancelled
                and e.event_name == meter["event_name"]
                and e.customer == q.get("customer")
                and start <= e.timestamp < end
            ),
            Decimal(0),
        )
        return [
            {
                "id": new_id("mtrusg"),
                "object": "billing.meter_event_summary",
                "aggregated_value": float(total),
                "start_time": start,
                "end_time": end,
                "meter": meter_id,
                "livemode": False,
            }
        ]

    def totals(self) -> dict[str, dict[str, str]]:
        sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for e in self.events.values():
            if not e.cancelled:
                sums[e.customer][e.event_name] += e.value
        return {c: {m: f"{v:.6f}" for m, v in sorted(ms.items())} for c, ms in sorted(sums.items())}

    # --- catalog ----------------------------------------------------------------
    def create_product(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("name"):
            raise StripeFailure(400, "Missing required param: name.", code="parameter_missing")
        product = {
            "id": p.get("id") or new_id("prod"),
            "object": "product",
            "name": p["name"],
            "active": True,
            "metadata": p.get("metadata", {}),
            "created": self.now(),
            "livemode": False,
        }
        self.products[product["id"]] = product
        return product

    def create_price(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("product") not in self.products:
            raise StripeFailure(400, f"No such product: '{p.get('product')}'", code="resource_missing")
        key = p.get("lookup_key")
        holder = next((x for x in self.prices.values() if key and x["lookup_key"] == key and x["active"]), None)
        if holder is not None:
            if str(p.get("transfer_lookup_key", "false")).lower() != "true":
                raise StripeFailure(400, f"A price with lookup_key {key} already exists.", code="lookup_key_exists")
            holder["lookup_key"] = None
        recurring = p.get("recurring")
        price = {
            "id": new_id("price"),
            "object": "price",
            "product": p["product"],
            "currency": p.get("currency", "usd"),
            "unit_amount_decimal": p.get("unit_amount_decimal"),
            "lookup_key": key,
            "nickname": p.get("nickname"),
            "metadata": p.get("metadata", {}),
            "active": True,
            "billing_scheme": "per_unit",
            "recurring": None
            if recurring is None
            else {
                "interval": recurring.get("interval", "month"),
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": recurring.get("meter"),
                "interval_count": 1,
            },
            "type": "recurring" if recurring else "one_time",
            "created": self.now(),
            "livemode": False,
        }
        self.prices[price["id"]] = price
        return price

    def list_prices(self, q: dict[str, Any]) -> list[dict[str, Any]]:
        keys = q.get("lookup_keys")
        keys = list(keys.values()) if isinstance(keys, dict) else keys
        out = list(self.prices.values())
        if keys:
            out = [x for x in out if x["lookup_key"] in keys]
        if q.get("product"):
            out = [x for x in out if x["product"] == q["product"]]
        if "active" in q:
            out = [x for x in out if x["active"] == (str(q["active"]).lower() == "true")]
        return out
