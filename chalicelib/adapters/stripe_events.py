"""Stripe's thin events (event destinations) through stripe-python: verify, then fetch the full event.

`StripeClient.parse_event_notification` checks the `Stripe-Signature` header as for webhooks (HMAC-SHA256
of `{t}.{body}` with the destination's secret, within the tolerance) and parses the notification;
`fetch_event` reads `/v2/core/events/{id}`, whose `data` holds what a meter error report says.
"""

from __future__ import annotations

from typing import Any

import stripe

from chalicelib.adapters.stripe_errors import translated
from chalicelib.operator_ports import MeterErrorGateway, WebhookVerifier

TOLERANCE_SECONDS = 300


class StripeEventsGateway(MeterErrorGateway):
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def parse_thin_event(self, payload: bytes, signature: str, secret: str) -> tuple[str, str]:
        try:
            notification = self.client.parse_event_notification(payload, signature, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            raise ValueError(f"bad Stripe signature: {exc.user_message or exc}") from None
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a thin event: {exc!r}") from None
        return str(notification.id), str(notification.type)

    @translated
    def fetch_event(self, event_id: str) -> dict[str, Any]:
        event = self.client.v2.core.events.retrieve(event_id)
        return dict(event.to_dict())


class StripeWebhookVerifier(WebhookVerifier):
    """stripe-python's HMAC check of a snapshot event; no client, so no API key is needed to refuse a forgery."""

    def verify(self, payload: bytes, header: str, secret: str) -> None:
        try:
            # The route checks the timestamp against its injected clock, both ways: no tolerance here.
            stripe.WebhookSignature.verify_header(payload, header, secret, None)
        except stripe.SignatureVerificationError as exc:
            raise ValueError(str(exc.user_message or exc)) from None
        except UnicodeDecodeError:
            raise ValueError("body is not UTF-8") from None
