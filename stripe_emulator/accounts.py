"""The emulator's customers (and their balance), subscriptions and webhook endpoints: a part of `State`."""

from __future__ import annotations

import secrets
import time
from typing import Any

from stripe_emulator.objects import StripeFailure, listing, new_id


class AccountsState:
    """Customers, subscriptions and webhook endpoints. A mixin of `State`, which holds the fields."""

    customers: dict[str, dict[str, Any]]
    balance_txns: dict[str, list[dict[str, Any]]]
    subscriptions: dict[str, dict[str, Any]]
    webhook_endpoints: dict[str, dict[str, Any]]
    prices: dict[str, dict[str, Any]]
    fixed_now: int | None

    def now(self) -> int:
        return self.fixed_now if self.fixed_now is not None else int(time.time())

    # --- customers ----------------------------------------------------------------
    def create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": new_id("cus"),
            "object": "customer",
            "email": p.get("email"),
            "name": p.get("name"),
            "metadata": p.get("metadata", {}),
            "balance": int(p.get("balance", 0)),
            "created": self.now(),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def customer(self, cid: str) -> dict[str, Any]:
        if cid not in self.customers:
            raise StripeFailure(404, f"No such customer: '{cid}'", code="resource_missing")
        return self.customers[cid]

    def update_customer(self, cid: str, p: dict[str, Any]) -> dict[str, Any]:
        customer = self.customer(cid)
        for k in ("email", "name"):
            if k in p:
                customer[k] = p[k]
        if "balance" in p:
            customer["balance"] = int(p["balance"])
        customer["metadata"].update(p.get("metadata", {}))
        return customer

    def add_balance(self, cid: str, p: dict[str, Any]) -> dict[str, Any]:
        customer = self.customer(cid)
        try:
            amount = int(p["amount"])
        except (KeyError, ValueError):
            raise StripeFailure(
                400, "amount must be an integer number of cents.", code="parameter_invalid_integer"
            ) from None
        customer["balance"] += amount
        txn = {
            "id": new_id("cbtxn"),
            "object": "customer_balance_transaction",
            "amount": amount,
            "currency": p.get("currency", "usd"),
            "customer": cid,
            "description": p.get("description"),
            "ending_balance": customer["balance"],
            "metadata": p.get("metadata", {}),
            "type": "adjustment",
            "created": self.now(),
            "livemode": False,
        }
        self.balance_txns[cid].append(txn)
        return txn

    # --- subscriptions ---------------------------------------------------------------
    def create_subscription(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p.get("customer", "")
        self.customer(cid)
        raw_items = p.get("items") or {}
        items = list(raw_items.values()) if isinstance(raw_items, dict) else raw_items
        if not items:
            raise StripeFailure(400, "Missing required param: items.", code="parameter_missing")
        data = []
        for item in items:
            price = self.prices.get(item.get("price", ""))
            if price is None:
                raise StripeFailure(400, f"No such price: '{item.get('price')}'", code="resource_missing")
            data.append({"id": new_id("si"), "object": "subscription_item", "price": price, "quantity": None})
        sub_id = new_id("sub")
        sub = {
            "id": sub_id,
            "object": "subscription",
            "customer": cid,
            "status": "active",
            "canceled_at": None,
            "metadata": p.get("metadata", {}),
            "created": self.now(),
            "livemode": False,
            "items": listing(f"/v1/subscription_items?subscription={sub_id}", data),
        }
        self.subscriptions[sub_id] = sub
        return sub

    def subscription(self, sid: str) -> dict[str, Any]:
        if sid not in self.subscriptions:
            raise StripeFailure(404, f"No such subscription: '{sid}'", code="resource_missing")
        return self.subscriptions[sid]

    def cancel_subscription(self, sid: str) -> dict[str, Any]:
        sub = self.subscription(sid)
        if sub["status"] != "canceled":
            sub["status"] = "canceled"
            sub["canceled_at"] = self.now()
        return sub

    def list_subscriptions(self, q: dict[str, Any]) -> list[dict[str, Any]]:
        subs = list(self.subscriptions.values())
        if q.get("customer"):
            subs = [s for s in subs if s["customer"] == q["customer"]]
        status = q.get("status")
        if status and status != "all":
            subs = [s for s in subs if s["status"] == status]
        elif not status:
            subs = [s for s in subs if s["status"] != "canceled"]
        return subs

    # --- webhook endpoints ---------------------------------------------------------------
    def create_webhook_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        events = p.get("enabled_events") or []
        events = list(events.values()) if isinstance(events, dict) else list(events)
        if not p.get("url") or not events:
            raise StripeFailure(400, "Missing required param: url/enabled_events.", code="parameter_missing")
        endpoint = {
            "id": new_id("we"),
            "object": "webhook_endpoint",
            "url": p["url"],
            "enabled_events": events,
            "status": "enabled",
            "secret": "whsec_" + secrets.token_hex(16),
            "created": self.now(),
            "livemode": False,
        }
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def webhook_endpoint(self, wid: str) -> dict[str, Any]:
        if wid not in self.webhook_endpoints:
            raise StripeFailure(404, f"No such webhook endpoint: '{wid}'", code="resource_missing")
        return self.webhook_endpoints[wid]

    def update_webhook_endpoint(self, wid: str, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.webhook_endpoint(wid)
        if "disabled" in p:
            endpoint["status"] = "disabled" if str(p["disabled"]).lower() == "true" else "enabled"
        if "enabled_events" in p:
            events = p["enabled_events"]
            endpoint["enabled_events"] = list(events.values()) if isinstance(events, dict) else list(events)
        if "url" in p:
            endpoint["url"] = p["url"]
        return endpoint

    def delete_webhook_endpoint(self, wid: str) -> dict[str, Any]:
        self.webhook_endpoint(wid)
        del self.webhook_endpoints[wid]
        return {"id": wid, "object": "webhook_endpoint", "deleted": True}
