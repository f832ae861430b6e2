"""The Stripe gateway: the port the billing core calls, and its stripe-python adapter.

The core never imports stripe; it sees outcomes (sent, duplicate, retry,
rejected). The adapter uses the official client with explicit network retries,
a deterministic idempotency key on every POST, and `STRIPE_API_BASE` to point
at the emulator for local work.
"""

from __future__ import annotations

import uuid
from typing import Any

import stripe

from chalicelib.adapters.stripe_errors import translated
from chalicelib.core.catalog import PriceSpec, StripeCatalog, StripePrice
from chalicelib.core.cutover.preflight import WebhookEndpoint
from chalicelib.core.meter_events import CancelResult, MeterEvent, Outcome, SendResult
from chalicelib.core.pricing import CURRENCY
from chalicelib.core.subscriptions import Subscription
from chalicelib.settings import Settings
from chalicelib.stripe_ports import AccountGateway, CatalogGateway, MeterEventGateway

# Stripe's answer to an identifier it has seen: the event was delivered earlier (a lost answer, a crash).
DUPLICATE_MESSAGE = "An event already exists with identifier"


def make_client(settings: Settings) -> stripe.StripeClient:
    kwargs: dict[str, Any] = {"max_network_retries": settings.STRIPE_MAX_NETWORK_RETRIES}
    if settings.STRIPE_API_BASE:
        kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(settings.secret("STRIPE_API_KEY"), **kwargs)


def _retry_after(exc: stripe.StripeError) -> float | None:
    headers = exc.headers or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: stripe.StripeError) -> SendResult:
    """Map a stripe-python error to what the sender should do with the row."""
    message = exc.user_message or str(exc)
    if isinstance(exc, stripe.RateLimitError):
        return SendResult(Outcome.RATE_LIMITED, message, _retry_after(exc) or 1.0)
    if isinstance(exc, stripe.InvalidRequestError) and DUPLICATE_MESSAGE in message:
        return SendResult(Outcome.DUPLICATE, message)
    if isinstance(exc, (stripe.APIConnectionError, stripe.APIError)):
        return SendResult(Outcome.RETRY, message)
    if isinstance(exc, stripe.IdempotencyError):
        return SendResult(Outcome.RETRY, message)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # A key problem is the operator's to fix; the rows must wait, not be dropped.
        return SendResult(Outcome.RETRY, message)
    if exc.http_status is not None and exc.http_status >= 500:
        return SendResult(Outcome.RETRY, message)
    return SendResult(Outcome.REJECTED, message)


class StripeClientGateway(MeterEventGateway):
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        params: stripe.params.billing.MeterEventCreateParams = {
            "event_name": event.event_name,
            "identifier": event.identifier,
            "timestamp": event.timestamp,
            "payload": {"stripe_customer_id": event.customer, "value": event.value},
        }
        try:
            # Same key on every retry of this row, so Stripe replays the first answer for 24 h.
            self.client.v1.billing.meter_events.create(
                params, options={"idempotency_key": f"meter-event:{event.identifier}"}
            )
        except stripe.APIError as exc:
            if not _replayed_server_error(exc):
                return classify(exc)
            # Stripe replays a stored 5xx for 24 h: without a new key the row would wait a day. A new key
            # is safe because the identifier dedupes: if the first attempt landed, this is a DUPLICATE.
            return self._send_again(params, event)
        except stripe.StripeError as exc:
            return classify(exc)
        return SendResult(Outcome.SENT)

    def _send_again(self, params: stripe.params.billing.MeterEventCreateParams, event: MeterEvent) -> SendResult:
        try:
            self.client.v1.billing.meter_events.create(
                params, options={"idempotency_key": f"meter-event:{event.identifier}:{uuid.uuid4().hex}"}
            )
        except stripe.StripeError as exc:
            return classify(exc)
        return SendResult(Outcome.SENT)


def _meter_id(price: Any) -> str | None:
    recurring = price.to_dict().get("recurring") or {}
    meter = recurring.get("meter")
    return str(meter) if meter else None


def _metadata(obj: Any) -> dict[str, str]:
    # stripe-python objects are not dicts (v8+): read them through to_dict().
    return dict(obj.to_dict().get("metadata") or {})


def _subscription(sub: Any) -> Subscription:
    data = sub.to_dict()
    items = data.get("items") or {}
    metadata = data.get("metadata") or {}
    made_by = str(metadata.get("checkout_created", ""))
    return Subscription(
        data["id"],
        tuple(i["id"] for i in items.get("data") or []),
        data.get("status", ""),
        org_id=metadata.get("org_id"),
        checkout_created=int(made_by) if made_by.isdecimal() else int(data.get("created") or 0),
        canceled_at=int(data["canceled_at"]) if data.get("canceled_at") else None,
    )


class StripeAccountsGateway(CatalogGateway, AccountGateway):
    """Catalog and provisioning calls; every create carries a deterministic idempotency key."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    # --- catalog ---
    @translated
    def stripe_catalog(self, lookup_keys: list[str], product_id: str) -> StripeCatalog:
        meters = {
            m.event_name: m.id
            for m in self.client.v1.billing.meters.list({"limit": 100}).auto_paging_iter()
            if m.status == "active"
        }
        try:
            self.client.v1.products.retrieve(product_id)
            product = True
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
            product = False
        prices = {
            p.lookup_key: StripePrice(p.id, p.lookup_key, _meter_id(p))
            for p in self.client.v1.prices.list({"lookup_keys": lookup_keys, "active": True, "limit": 100}).data
            if p.lookup_key
        }
        return StripeCatalog(meters, product, prices)

    @translated
    def create_meter(self, event_name: str) -> str:
        meter = self.client.v1.billing.meters.create(
            {
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            },
            options={"idempotency_key": f"meter-create-{event_name}"},
        )
        return str(meter.id)

    @translated
    def create_product(self, product_id: str, name: str) -> None:
        self.client.v1.products.create(
            {"id": product_id, "name": name}, options={"idempotency_key": f"product-create-{product_id}"}
        )

    @translated
    def create_price(self, spec: PriceSpec, product_id: str, meter_id: str) -> StripePrice:
        if spec.unit_amount_decimal is None:
            raise ValueError(f"{spec.lookup_key} is priced in the Stripe dashboard, not created here")
        price = self.client.v1.prices.create(
            {
                "product": product_id,
                "currency": CURRENCY,
                "unit_amount_decimal": spec.unit_amount_decimal,
                "lookup_key": spec.lookup_key,
                "nickname": spec.catalog_key,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
                "metadata": {"catalog_key": spec.catalog_key},
            },
            options={"idempotency_key": f"price-create-{spec.lookup_key}"},
        )
        return StripePrice(price.id, spec.lookup_key, meter_id)

    # --- provisioning ---
    @translated
    def subscription(self, subscription_id: str) -> Subscription | None:
        try:
            return _subscription(self.client.v1.subscriptions.retrieve(subscription_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    @translated
    def live_subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        # Our own notion of live: the default listing's idea of it is not ours to depend on.
        return [s for s in self.subscriptions(customer, org_id) if s.live]

    @translated
    def subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        # List, not Search: List is read-after-write, Search lags up to a minute.
        listed = self.client.v1.subscriptions.list({"customer": customer, "status": "all", "limit": 100})
        subs = (_subscription(s) for s in listed.auto_paging_iter())
        return [s for s in subs if s.org_id == org_id]

    @translated
    def create_subscription(
        self, customer: str, org_id: str, price_ids: list[str], checkout_created: int, idempotency_key: str
    ) -> Subscription:
        sub = self.client.v1.subscriptions.create(
            {"customer": customer, "items": [{"price": p} for p in price_ids],
             "metadata": {"org_id": org_id, "checkout_created": str(checkout_created)}},
            options={"idempotency_key": idempotency_key},
        )
        return _subscription(sub)

    @translated
    def cancel_subscription(self, subscription_id: str) -> None:
        self.client.v1.subscriptions.cancel(subscription_id)

    @translated
    def find_credit(self, customer: str, org_id: str) -> str | None:
        txns = self.client.v1.customers.balance_transactions.list(customer, {"limit": 100})
        for txn in txns.auto_paging_iter():
            if _metadata(txn).get("upgrade_credit_org") == org_id:
                return str(txn.id)
        return None

    @translated
    def create_credit(
        self, customer: str, org_id: str, amount_cents: int, idempotency_key: str, fallback_key: str
    ) -> str:
        # A balance transaction adds to the balance; setting `balance` on the customer would overwrite it.
        params: stripe.params.CustomerBalanceTransactionCreateParams = {
            "amount": amount_cents, "currency": CURRENCY, "description": "Pro upgrade credit",
            "metadata": {"upgrade_credit_org": org_id},
        }
        try:
            txn = self.client.v1.customers.balance_transactions.create(
                customer, params, options={"idempotency_key": idempotency_key}
            )
        except stripe.APIError as exc:
            if not _replayed_server_error(exc):
                raise
            # Stripe keeps a 5xx under its key for 24 h; the caller listed the credits just before, so
            # none exists and a fresh key cannot make a second one.
            txn = self.client.v1.customers.balance_transactions.create(
                customer, params, options={"idempotency_key": fallback_key}
            )
        return str(txn.id)


def _replayed_server_error(exc: stripe.StripeError) -> bool:
    headers = exc.headers or {}
    replayed = headers.get("idempotent-replayed") or headers.get("Idempotent-Replayed")
    return (exc.http_status or 0) >= 500 and replayed == "true"


class StripeCutoverGateway:
    """What the cutover CLI asks Stripe: the webhook endpoints, and meter event cancellations."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @translated
    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return [
            WebhookEndpoint(e.id, e.url, tuple(e.to_dict().get("enabled_events") or ()), e.status)
            for e in self.client.v1.webhook_endpoints.list({"limit": 100}).auto_paging_iter()
        ]

    def cancel_meter_event(self, event_name: str, identifier: str) -> CancelResult:
        """A meter event adjustment of type cancel (Stripe allows it within 24 h of the event's receipt)."""
        try:
            self.client.v1.billing.meter_event_adjustments.create(
                {"event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier}},
                options={"idempotency_key": f"meter-event-cancel:{identifier}"},
            )
        except stripe.StripeError as exc:
            return CancelResult(False, exc.user_message or str(exc))
        return CancelResult(True)
