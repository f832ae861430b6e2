"""Stripe meter events through stripe-python's StripeClient (STRIPE_API_BASE points it at the emulator)."""

from __future__ import annotations

from typing import Any

import stripe

from cellkit.ports import SendResult

DUPLICATE_MESSAGE = "An event already exists with identifier"


def make_client(api_key: str, api_base: str | None, max_network_retries: int = 2) -> stripe.StripeClient:
    kwargs: dict[str, Any] = {"max_network_retries": max_network_retries}
    if api_base:
        kwargs["base_addresses"] = {"api": api_base}
    return stripe.StripeClient(api_key, **kwargs)


def classify(exc: stripe.StripeError) -> SendResult:
    message = exc.user_message or str(exc)
    if isinstance(exc, stripe.RateLimitError):
        headers = exc.headers or {}
        try:
            retry_after = float(headers.get("retry-after") or headers.get("Retry-After") or 1)
        except ValueError:
            retry_after = 1.0
        return SendResult("rate_limited", message, retry_after)
    if isinstance(exc, stripe.InvalidRequestError) and DUPLICATE_MESSAGE in message:
        # Stripe has it already (a lost answer, a crash before marking): delivered, never re-send.
        return SendResult("duplicate", message)
    if isinstance(exc, (stripe.APIConnectionError, stripe.APIError, stripe.IdempotencyError,
                        stripe.AuthenticationError, stripe.PermissionError)):
        return SendResult("retry", message)
    if exc.http_status is not None and exc.http_status >= 500:
        return SendResult("retry", message)
    return SendResult("rejected", message)


class StripeMeterEvents:
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult:
        try:
            self.client.v1.billing.meter_events.create(
                {"event_name": event_name, "identifier": identifier, "timestamp": timestamp,
                 "payload": {"stripe_customer_id": customer, "value": value}},
                options={"idempotency_key": f"cell-meter-event:{identifier}"},
            )
        except stripe.StripeError as exc:
            return classify(exc)
        return SendResult("sent")
