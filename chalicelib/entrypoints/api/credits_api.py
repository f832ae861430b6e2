"""The free tier's cell-facing route (CONTRACT section 10): the halted list the cells reconcile against.

GET /internal/halted-orgs?cell_id=C   HMAC (GET): {"orgs": [{"org_id", "halted_at", "reason"}], "as_of"}
"""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.core.limits import printable
from chalicelib.entrypoints.api.http import Routes, answer, error, json_errors, signed_query
from chalicelib.services.credits import halted_orgs

routes = Routes(__name__)
HALTED_PATH = "/internal/halted-orgs"


@routes.route(HALTED_PATH, methods=["GET"])
@json_errors
def halted_orgs_route(request: Request, svc: Container) -> Response:
    query = signed_query(request, HALTED_PATH, svc, ("cell_id",))
    try:
        # Every cell gets the whole list (a halt is org-wide); the id names the caller in the logs.
        printable(query.get("cell_id") or "-", "cell_id")
    except ValueError as exc:
        return error(400, str(exc))
    orgs = [{"org_id": h.org_id, "halted_at": h.halted_at, "reason": h.reason} for h in halted_orgs(svc.credits())]
    return answer(200, {"orgs": orgs, "as_of": svc.now()})
