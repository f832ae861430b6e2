"""GET /health."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.routes.http import answer
from chalicelib.services import services

bp = Blueprint(__name__)


@bp.route("/health", methods=["GET"])
def health() -> Response:
    svc = services()
    return answer(200, {"ok": True, "env": svc.settings.WORKER_ENV, "shadow": svc.settings.SHADOW})
