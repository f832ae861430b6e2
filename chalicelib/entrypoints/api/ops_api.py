"""GET /health, and POST /run (one rollup on demand; 404 in prod, where only the schedule moves money)."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.entrypoints.api.http import Routes, answer, check_body_hmac, error, json_errors
from chalicelib.services.halt_push import credit_round
from chalicelib.services.rollup import run_rollup

routes = Routes(__name__)


@routes.route("/health", methods=["GET"])
def health(request: Request, svc: Container) -> Response:
    return answer(200, {"ok": True, "env": svc.settings.WORKER_ENV, "shadow": svc.settings.SHADOW})


@routes.route("/run", methods=["POST"], content_types=["application/json", "text/plain", "application/octet-stream"])
@json_errors
def run(request: Request, svc: Container) -> Response:
    if svc.settings.stage_is_prod:
        return error(404, "not found")
    check_body_hmac(request, svc)
    body = run_rollup(svc, trigger="http").body()
    # The free tier's round too, so a free tick's spend shows at once after /run (CONTRACT section 10).
    body["credits"] = credit_round(svc.store, svc.credits(), svc.cells(), svc.pusher(), svc.settings, svc.now())
    return answer(200, body)
