"""POST /webhooks/stripe: verified with stripe-python on the raw body, then handed to `webhook`."""

from __future__ import annotations

import re
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.core.catalog import EmptyCatalog
from chalicelib.core.limits import JsonBodyError, load_json
from chalicelib.entrypoints.api.http import Routes, answer, error, json_errors, lowered, raw_body
from chalicelib.observability import logger
from chalicelib.ports import StoreRejected
from chalicelib.services.credits import sync_plan
from chalicelib.services.provisioning import ProvisioningConflict
from chalicelib.services.webhook import MalformedEvent, UnusableEvent, handle_event
from chalicelib.stripe_ports import GatewayError

routes = Routes(__name__)
TOLERANCE_SECONDS = 300
MAX_SIGNATURE_HEADER = 4096
# Stripe answers that no retry changes (an unknown customer, invalid parameters): the event is
# acknowledged as unusable instead of a 502 Stripe would retry for three days. 401/403 (a key
# problem an operator fixes), 409 and 429 stay retryable.
PERMANENT_STRIPE_STATUSES = frozenset({400, 402, 404})
_SIGNED_AT = re.compile(r"(?:^|,)t=([0-9]{1,12})(?:,|$)")


class BadSignature(ValueError):
    pass


def signed_at(header: str) -> int:
    """The header's `t=` (the first, as stripe-python reads it), as ASCII-digit unix seconds."""
    first_t = next((item for item in header.split(",") if item.startswith("t=")), "")
    match = _SIGNED_AT.fullmatch(first_t)
    if not match:
        raise BadSignature("Stripe-Signature t= must be unix seconds")
    return int(match.group(1))


def verify_stripe_signature(payload: bytes, header: str, svc: Container) -> None:
    """Stripe's own HMAC check (stripe-python), then the timestamp against the injected clock,
    in both directions: stripe-python checks only the past, and reads the wall clock."""
    # compare_digest inside stripe-python raises TypeError on non-ASCII text: refuse it first.
    if not header.isascii() or len(header) > MAX_SIGNATURE_HEADER:
        raise BadSignature("malformed Stripe-Signature header")
    secret = svc.settings.secret("STRIPE_WEBHOOK_SECRET")
    try:
        svc.webhook_signatures().verify(payload, header, secret)
    except ValueError as exc:
        raise BadSignature(str(exc)) from None
    if abs(svc.now() - signed_at(header)) > TOLERANCE_SECONDS:
        raise BadSignature(f"Stripe-Signature timestamp outside the {TOLERANCE_SECONDS}s tolerance")


def unusable(event_id: object, reason: str) -> Response:
    # 200 on purpose: the event is Stripe's and signed, but no retry can make it usable.
    logger.error("webhook_unusable", extra={"event_id": str(event_id)[:255], "reason": reason[:500]})
    return answer(200, {"received": True, "unusable": reason[:500]})


@routes.route("/webhooks/stripe", methods=["POST"], content_types=["application/json", "text/plain"])
@json_errors
def stripe_webhook(request: Request, svc: Container) -> Response:
    payload = raw_body(request)
    signature = lowered(request.headers).get("stripe-signature")
    if not signature:
        return error(400, "missing Stripe-Signature header")
    try:
        verify_stripe_signature(payload, signature, svc)
    except BadSignature as exc:
        return error(400, f"bad Stripe signature: {exc}")
    try:
        event = load_json(payload)
    except JsonBodyError as exc:
        return error(400, f"body is not a JSON Stripe event: {exc}")
    return handle_verified(event, svc)


def handle_verified(event: Any, svc: Container) -> Response:
    """A verified event's answer: every outcome deliberate (see docs/stripe.md's table)."""
    event_id = event.get("id") if isinstance(event, dict) else None
    try:
        now = svc.now()

        def credits_follow(org_id: str, plan: str) -> None:
            sync_plan(svc.credits(), svc.settings, org_id, plan, now)

        return answer(200, handle_event(event, svc.accounts(), svc.accounts_gateway(), now, after=credits_follow))
    except UnusableEvent as exc:
        return unusable(event_id, str(exc))
    except StoreRejected as exc:
        return unusable(event_id, f"the store refuses it for good: {exc}")
    except MalformedEvent as exc:
        return error(400, f"malformed event: {exc}")
    except EmptyCatalog as exc:
        # 5xx on purpose: Stripe retries, and the org stays as it was until the catalog is published.
        logger.error("webhook_catalog_empty", extra={"error": str(exc)})
        return error(500, str(exc))
    except ProvisioningConflict as exc:
        return error(409, str(exc))
    except GatewayError as exc:
        if exc.status in PERMANENT_STRIPE_STATUSES:
            return unusable(event_id, f"Stripe refuses it for good ({exc.status}): {exc}")
        logger.error("webhook_stripe_failed", extra={"error": str(exc), "status": exc.status})
        return error(502, f"Stripe call failed, retry later: {exc}")
