"""Cell-facing internal routes: usage parity, org policy, org registration."""

from __future__ import annotations

import re

from chalice import Response
from chalice.app import Request
from pydantic import ValidationError

from chalicelib.bootstrap import Container
from chalicelib.core.buckets import buckets_between
from chalicelib.core.limits import load_json, printable
from chalicelib.entrypoints.api.http import (
    JSON,
    Routes,
    answer,
    check_body_hmac,
    error,
    json_errors,
    raw_body,
    signed_query,
)
from chalicelib.entrypoints.org_schema import OrgBody, org_body
from chalicelib.services.orgs import UnknownOrg, org_policy, put_org
from chalicelib.services.parity import NotSettled, Window, WindowError, aligned, parse_window, usage_parity
from chalicelib.settings import Settings

routes = Routes(__name__)
PARITY_PATH = "/internal/usage-parity"
POLICY_PATH = "/internal/org-policy"


# Unix seconds as ASCII digits: int() alone also takes "+5", " 5", "5_000" and non-ASCII digits,
# and 12 digits keep every bucket computation far from Decimal's precision.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def parity_window(params: dict[str, str], settings: Settings) -> Window:
    """The parity window: whole buckets, bounded in number (each costs a few small reads of its
    aggregates), so the largest allowed question answers in milliseconds whatever the stage's width."""
    for name in ("from", "to"):
        raw = params.get(name)
        if raw is not None and not _UNIX_SECONDS.fullmatch(raw):
            raise WindowError(f"{name!r}={raw[:40]!r} must be integers: unix seconds, 1 to 12 ASCII digits")
    window = aligned(parse_window(params), settings.BUCKET_SECONDS)
    buckets = len(buckets_between(window.start, window.end, settings.BUCKET_SECONDS))
    if buckets > settings.MAX_PARITY_BUCKETS:
        raise WindowError(
            f"window [{window.start}, {window.end}) spans {buckets} buckets of {settings.BUCKET_SECONDS}s: "
            f"the maximum is {settings.MAX_PARITY_BUCKETS} (MAX_PARITY_BUCKETS); ask in smaller windows"
        )
    return window


@routes.route(PARITY_PATH, methods=["GET"])
@json_errors
def usage_parity_route(request: Request, svc: Container) -> Response:
    window = parity_window(signed_query(request, PARITY_PATH, svc, ("from", "to")), svc.settings)
    try:
        return answer(200, usage_parity(svc.store, svc.settings, window, svc.now(), svc.rollup_queue()))
    except NotSettled as exc:
        # Not an outage: the cell waits Retry-After and asks again (CONTRACT section 2); "settling" says so.
        return Response(body={"error": str(exc), "settling": exc.buckets, "retry_after": exc.retry_after},
                         status_code=503, headers={**JSON, "Retry-After": str(exc.retry_after)})


@routes.route(POLICY_PATH, methods=["GET"])
@json_errors
def org_policy_route(request: Request, svc: Container) -> Response:
    query = signed_query(request, POLICY_PATH, svc, ("org_id", "cell_id"))
    org_id = query.get("org_id")
    if not org_id:
        return error(400, "query parameter 'org_id' is required")
    try:
        printable(org_id, "org_id")
        printable(query.get("cell_id") or "-", "cell_id")
    except ValueError as exc:
        return error(400, str(exc))
    try:
        policy = org_policy(svc.store, svc.credits(), svc.settings, org_id, query.get("cell_id") or None, svc.now())
    except UnknownOrg as exc:
        return error(404, str(exc))
    return answer(200, policy.body())


@routes.route("/internal/orgs/{org_id}", methods=["PUT"])
@json_errors
def put_org_route(request: Request, svc: Container, org_id: str) -> Response:
    check_body_hmac(request, svc)
    try:
        # ASCII: the org id goes into Stripe idempotency keys and meter identifiers (HTTP headers).
        printable(org_id, "org_id", ascii_only=True)
        body = OrgBody.model_validate(load_json(raw_body(request) or b"null"))
    except (ValueError, ValidationError) as exc:
        return error(400, f"invalid org body: {exc}")
    return answer(200, org_body(put_org(svc.store, org_id, body.model_dump(exclude_none=True), svc.now())))
