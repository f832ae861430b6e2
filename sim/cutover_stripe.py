"""`make run`'s Stripe set-up, as an operator does it: the catalog, the dashboard prices, the one webhook
endpoint, customers and org records; and the signed webhooks the scenario sends (checkout, cancellation)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import stripe

from sim import stack
from sim.api import EdgeClient, post_webhook
from sim.cutover_orgs import ORGS, ROOT, Run


def publish_catalog(run: Run) -> None:
    done = subprocess.run([sys.executable, "-m", "chalicelib.cli", "ensure-products"], cwd=ROOT,
                          env=os.environ | run.info.cli_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"ensure-products failed ({done.returncode}):\n{done.stdout}{done.stderr}")


# Made by hand in the Stripe dashboard (ensure-products discovers them, never creates them): lookup key -> meter.
DASHBOARD_PRICES = {"sandbox_compute_overage": "sandbox_compute_sandbox_overage",
                    "sandbox_compute_reserved": "sandbox_compute_sandbox_reserved"}


def dashboard_prices(client: stripe.StripeClient) -> None:
    """The operator's manual step before the catalog can be complete: the overage and reserved prices."""
    meters = {m.event_name: m.id for m in client.v1.billing.meters.list({"limit": 100}).data}
    client.v1.products.create({"id": "prod_dashboard", "name": "made by hand"})
    for key, meter in DASHBOARD_PRICES.items():
        recurring: Any = {"interval": "month", "usage_type": "metered", "meter": meters[meter]}
        client.v1.prices.create({"product": "prod_dashboard", "currency": "usd",
                                 "unit_amount_decimal": Decimal("0.0004"), "lookup_key": key, "recurring": recurring})


def stripe_client(info: stack.StackInfo) -> stripe.StripeClient:
    return stripe.StripeClient(info.stripe_api_key, base_addresses={"api": info.stripe_url})


def setup_stripe_and_orgs(run: Run, edge: EdgeClient) -> None:
    """The deploy's operator steps: catalog, the one webhook endpoint, customers, org records."""
    client = stripe_client(run.info)
    publish_catalog(run)  # meters and the managed prices; it lists the dashboard prices it lacks
    dashboard_prices(client)
    publish_catalog(run)  # now complete: the preflight's catalog check passes
    client.v1.webhook_endpoints.create({"url": run.info.api_url + "/webhooks/stripe", "enabled_events": [
        "checkout.session.completed", "customer.subscription.created", "customer.subscription.deleted"]})
    for org in ORGS:
        if org.plan == "pro" or org.org_id in ("stark", "soylent"):  # the two upgrade through a checkout
            run.customers[org.org_id] = client.v1.customers.create({"metadata": {"org_id": org.org_id}}).id
        body: dict[str, Any] = {"billing_mode": org.mode, "plan": "free" if org.by_webhook else org.plan}
        if org.org_id in run.customers:
            body["stripe_customer_id"] = run.customers[org.org_id]
        answer = edge.post(f"/internal/orgs/{org.org_id}", body, method="PUT")
        if answer.status != 200:
            raise SystemExit(f"registering {org.org_id} failed: {answer.status} {answer.body}")
        if org.by_webhook:
            run.subscriptions[org.org_id] = checkout(run, org.org_id)["subscription"]


def webhook(run: Run, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    event = {"id": f"evt_sim_{obj['id']}_{time.time_ns()}", "type": event_type, "created": now,
             "data": {"object": obj}}
    answer = post_webhook(run.info.api_url, run.info.webhook_secret, event)
    if answer.status != 200:
        raise RuntimeError(f"webhook {event_type} answered {answer.status}: {answer.body}")
    body: dict[str, Any] = answer.body
    return body


def checkout(run: Run, org_id: str) -> dict[str, Any]:
    body = webhook(run, "checkout.session.completed", {
        "id": f"cs_sim_{org_id}", "object": "checkout.session", "mode": "setup", "customer": run.customers[org_id],
        "metadata": {"type": "setup", "org_id": org_id}})
    if body.get("action") != "provisioned":
        raise RuntimeError(f"checkout of {org_id} did not provision: {body}")
    return body


def cancel(run: Run, org_id: str) -> dict[str, Any]:
    return webhook(run, "customer.subscription.deleted", {
        "id": run.subscriptions[org_id], "object": "subscription", "customer": run.customers[org_id],
        "status": "canceled"})
