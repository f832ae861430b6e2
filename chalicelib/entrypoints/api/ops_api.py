"""GET /health, and POST /run (one rollup on demand; 404 in prod, where only the schedule moves money)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.entrypoints.api.http import answer, check_body_hmac, error, json_errors
from chalicelib.services.rollup import run_rollup

bp = Blueprint(__name__)


@bp.route("/health", methods=["GET"])
def health() -> Response:
    svc = services()
    return answer(200, {"ok": True, "env": svc.settings.WORKER_ENV, "shadow": svc.settings.SHADOW})


@bp.route("/run", methods=["POST"], content_types=["application/json", "text/plain", "application/octet-stream"])
@json_errors
def run() -> Response:
    svc = services()
    if svc.settings.stage_is_prod:
        return error(404, "not found")
    check_body_hmac(bp.current_request, svc)
    return answer(200, run_rollup(svc, trigger="http").body())
