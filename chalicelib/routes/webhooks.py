"""POST /webhooks/stripe: verified with stripe-python on the raw body, then handed to `webhook`."""

from __future__ import annotations

import json

import stripe
from chalice import Blueprint, Response

from chalicelib.catalog import EmptyCatalog
from chalicelib.observability import logger
from chalicelib.provisioning import ProvisioningConflict
from chalicelib.routes.http import answer, error, json_errors, lowered, raw_body
from chalicelib.services import services
from chalicelib.webhook import MalformedEvent, handle_event

bp = Blueprint(__name__)
TOLERANCE_SECONDS = 300


@bp.route("/webhooks/stripe", methods=["POST"], content_types=["application/json", "text/plain"])
@json_errors
def stripe_webhook() -> Response:
    request = bp.current_request
    svc = services()
    payload = raw_body(request)
    signature = lowered(request.headers).get("stripe-signature")
    if not signature:
        return error(400, "missing Stripe-Signature header")
    try:
        # Stripe's own check (HMAC-SHA256 over "t.payload", timestamp within the tolerance).
        stripe.Webhook.construct_event(
            payload, signature, svc.settings.secret("STRIPE_WEBHOOK_SECRET"), tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        return error(400, f"bad Stripe signature: {exc.user_message or exc}")
    except ValueError:
        return error(400, "body is not a JSON Stripe event")
    try:
        return answer(200, handle_event(json.loads(payload), svc.accounts(), svc.accounts_gateway(), svc.now()))
    except MalformedEvent as exc:
        return error(400, f"malformed event: {exc}")
    except EmptyCatalog as exc:
        # 5xx on purpose: Stripe retries, and the org stays as it was until the catalog is published.
        logger.error("webhook_catalog_empty", extra={"error": str(exc)})
        return error(500, str(exc))
    except ProvisioningConflict as exc:
        return error(409, str(exc))
    except stripe.StripeError as exc:
        logger.error("webhook_stripe_failed", extra={"error": str(exc), "status": exc.http_status})
        return error(502, f"Stripe call failed, retry later: {exc.user_message or exc}")
