"""POST /webhooks/stripe/events: Stripe's thin events (an event destination), meter error reports.

Verified as stripe-python verifies thin events (`StripeClient.parse_event_notification`, the
destination's own secret `STRIPE_EVENTS_SECRET`), then fetched from Stripe (a thin event carries no
data) and handed to `services/meter_errors.py`. Answers: 200 handled (or a type this route does not
handle, acknowledged so Stripe stops retrying); 400 no or bad signature, or not a meter error report;
502 fetching the event from Stripe failed (Stripe retries); 503 the store failed.
"""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.core.meter_error_report import REPORT_TYPES, MalformedReport
from chalicelib.entrypoints.api.http import Routes, answer, error, json_errors, lowered, raw_body
from chalicelib.observability import logger
from chalicelib.services.meter_errors import receive
from chalicelib.stripe_ports import GatewayError

routes = Routes(__name__)
MAX_SIGNATURE_HEADER = 4096


@routes.route("/webhooks/stripe/events", methods=["POST"], content_types=["application/json", "text/plain"])
@json_errors
def stripe_thin_event(request: Request, svc: Container) -> Response:
    signature = lowered(request.headers).get("stripe-signature", "")
    if not signature or not signature.isascii() or len(signature) > MAX_SIGNATURE_HEADER:
        return error(400, "missing or malformed Stripe-Signature header")
    gateway = svc.events_gateway()
    try:
        event_id, event_type = gateway.parse_thin_event(raw_body(request), signature,
                                                        svc.settings.secret("STRIPE_EVENTS_SECRET"))
    except ValueError as exc:
        return error(400, str(exc)[:500])
    if event_type not in REPORT_TYPES:
        return answer(200, {"received": True, "ignored": event_type[:100]})
    try:
        return answer(200, receive(svc.store, svc.meter_errors(), gateway, event_id, svc.now(),
                                   svc.settings.WORKER_ENV))
    except MalformedReport as exc:
        logger.error("meter_error_report_unusable", extra={"event_id": event_id[:255], "error": str(exc)})
        return error(400, f"not a meter error report: {exc}")
    except GatewayError as exc:
        logger.error("meter_error_report_fetch_failed", extra={"event_id": event_id[:255], "error": str(exc)})
        return error(502, f"fetching the event from Stripe failed, retry later: {exc}")
