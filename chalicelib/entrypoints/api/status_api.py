"""GET /ops/status (HTML) and GET /ops/status.json (the same data): the operator's view (CONTRACT 11).

Behind AWS IAM on AWS (Chalice's IAMAuthorizer: API Gateway refuses a request not signed with SigV4
by a principal allowed `execute-api:Invoke`, before the function runs); `chalice local` does not
enforce it, so the local stack's page is reachable on loopback.
"""

from __future__ import annotations

from chalice import IAMAuthorizer, Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.entrypoints.api.http import Routes, answer, json_errors
from chalicelib.entrypoints.status_page import render
from chalicelib.services.status import status

routes = Routes(__name__)
operators = IAMAuthorizer()


@routes.route("/ops/status.json", methods=["GET"], authorizer=operators)
@json_errors
def status_json(request: Request, svc: Container) -> Response:
    return answer(200, status(svc, svc.meter_errors(), svc.free()))


@routes.route("/ops/status", methods=["GET"], authorizer=operators)
@json_errors
def status_html(request: Request, svc: Container) -> Response:
    page = render(status(svc, svc.meter_errors(), svc.free()))
    return Response(body=page, status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})
