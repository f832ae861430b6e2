"""The Stripe gateway: the port the billing core calls, and its stripe-python adapter.

The core never imports stripe; it sees outcomes (sent, duplicate, retry,
rejected). The adapter uses the official client with explicit network retries,
a deterministic idempotency key on every POST, and `STRIPE_API_BASE` to point
at the emulator for local work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import stripe

from chalicelib.settings import Settings

DUPLICATE_MESSAGE = "An event already exists with identifier"


class Outcome(StrEnum):
    SENT = "sent"
    # Stripe has this identifier already: the event was delivered earlier (a lost answer, a crash).
    DUPLICATE = "duplicate"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class MeterEvent:
    event_name: str
    identifier: str
    customer: str
    value: str
    timestamp: int


class StripeGateway(ABC):
    @abstractmethod
    def send_meter_event(self, event: MeterEvent) -> SendResult: ...


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


class StripeClientGateway(StripeGateway):
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        try:
            self.client.v1.billing.meter_events.create(
                {
                    "event_name": event.event_name,
                    "identifier": event.identifier,
                    "timestamp": event.timestamp,
                    "payload": {"stripe_customer_id": event.customer, "value": event.value},
                },
                # Same key on every retry of this row, so Stripe replays the first answer for 24 h.
                options={"idempotency_key": f"meter-event:{event.identifier}"},
            )
        except stripe.StripeError as exc:
            return classify(exc)
        return SendResult(Outcome.SENT)
