"""Cell-facing internal routes: usage parity, org policy, org registration."""

from __future__ import annotations

import json
from typing import Literal

from chalice import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.cap_tokens import mint
from chalicelib.orgs import Org, default_max_memory_gb
from chalicelib.parity import WindowError, parse_window, usage_parity
from chalicelib.routes.http import answer, check_body_hmac, check_get_hmac, error, json_errors
from chalicelib.services import services

bp = Blueprint(__name__)
PARITY_PATH = "/internal/usage-parity"
POLICY_PATH = "/internal/org-policy"


class OrgBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    billing_mode: Literal["legacy", "unified"]
    plan: Literal["pro", "free"] | None = None
    stripe_customer_id: str | None = Field(default=None, min_length=1, max_length=255)
    max_memory_gb: int | None = Field(default=None, ge=1, le=4096)


def org_body(org: Org) -> dict[str, object]:
    return {
        "org_id": org.org_id,
        "plan": org.plan,
        "billing_mode": org.billing_mode,
        "stripe_customer_id": org.stripe_customer_id,
        "max_memory_gb": org.max_memory_gb,
        "subscription_id": org.subscription_id,
        "updated_at": org.updated_at,
    }


def put_org(org_id: str, body: OrgBody, now: int) -> Org:
    """Create or update an org; fields the body leaves out keep their stored value."""
    return services().store.update_org(org_id, body.model_dump(exclude_none=True), now)


@bp.route(PARITY_PATH, methods=["GET"])
@json_errors
def usage_parity_route() -> Response:
    request = bp.current_request
    svc = services()
    check_get_hmac(request, PARITY_PATH, svc)
    try:
        window = parse_window(dict(request.query_params or {}))
    except WindowError as exc:
        return error(400, str(exc))
    return answer(200, usage_parity(svc.store, svc.settings, window, svc.now()))


@bp.route(POLICY_PATH, methods=["GET"])
@json_errors
def org_policy_route() -> Response:
    request = bp.current_request
    svc = services()
    check_get_hmac(request, POLICY_PATH, svc)
    query = dict(request.query_params or {})
    org_id = query.get("org_id")
    if not org_id:
        return error(400, "query parameter 'org_id' is required")
    org = svc.store.get_org(org_id)
    if org is None:
        return error(404, f"org {org_id} is not known to the edge")
    max_gb = org.max_memory_gb or default_max_memory_gb(org.plan)
    body: dict[str, object] = {"org_id": org_id, "plan": org.plan, "maxMemoryMb": max_gb * 1024}
    if query.get("cell_id"):
        # The plan just resolved, as a short-lived token the cell can hand to its sandbox creator.
        body["capToken"] = mint(svc.settings.secret("SESSION_JWT_SECRET"), org_id, org.plan, query["cell_id"],
                                svc.now())
    return answer(200, body)


@bp.route("/internal/orgs/{org_id}", methods=["PUT"])
@json_errors
def put_org_route(org_id: str) -> Response:
    request = bp.current_request
    svc = services()
    check_body_hmac(request, svc)
    try:
        body = OrgBody.model_validate(json.loads(request.raw_body or b"null"))
    except (ValueError, ValidationError) as exc:
        return error(400, f"invalid org body: {exc}")
    return answer(200, org_body(put_org(org_id, body, svc.now())))
