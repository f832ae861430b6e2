"""GET /ops/status (HTML) and GET /ops/status.json (the same data): the operator's view (CONTRACT 11).

Behind AWS IAM on AWS (Chalice's IAMAuthorizer: API Gateway refuses a request not signed with SigV4
by a principal allowed `execute-api:Invoke`, before the function runs); `chalice local` does not
enforce it, so the local stack's page is reachable on loopback.
"""

from __future__ import annotations

from chalice import Blueprint, IAMAuthorizer, Response

from chalicelib.bootstrap import services
from chalicelib.entrypoints.api.http import answer, json_errors
from chalicelib.entrypoints.status_page import render
from chalicelib.services.status import status

bp = Blueprint(__name__)
operators = IAMAuthorizer()


@bp.route("/ops/status.json", methods=["GET"], authorizer=operators)
@json_errors
def status_json() -> Response:
    svc = services()
    return answer(200, status(svc, svc.meter_errors(), svc.free()))


@bp.route("/ops/status", methods=["GET"], authorizer=operators)
@json_errors
def status_html() -> Response:
    svc = services()
    page = render(status(svc, svc.meter_errors(), svc.free()))
    return Response(body=page, status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})
