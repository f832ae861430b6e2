"""What every route shares: JSON answers, HMAC checks, and error mapping."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec

from chalice import Response
from chalice.app import Request

from chalicelib.hmac_auth import AuthError, verify_body, verify_get
from chalicelib.observability import logger
from chalicelib.services import Services
from chalicelib.store.base import StoreUnavailable

P = ParamSpec("P")
JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(body=body, status_code=status, headers=JSON)


def error(status: int, message: str, **extra: Any) -> Response:
    return answer(status, {"error": message, **extra})


def lowered(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}


def raw_body(request: Request) -> bytes:
    body = request.raw_body or b""
    return body.encode() if isinstance(body, str) else body


def check_body_hmac(request: Request, svc: Services) -> None:
    verify_body(
        lowered(request.headers),
        raw_body(request),
        svc.settings.secret("EVENT_SECRET"),
        svc.now(),
        svc.settings.HMAC_WINDOW_SECONDS,
    )


def check_get_hmac(request: Request, path: str, svc: Services) -> None:
    verify_get(
        lowered(request.headers),
        path,
        dict(request.query_params or {}),
        svc.settings.secret("EVENT_SECRET"),
        svc.now(),
        svc.settings.HMAC_WINDOW_SECONDS,
    )


def json_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Map auth failures to 400/401 and store failures to 503, always as JSON."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except AuthError as exc:
            return error(exc.status, exc.message)
        except StoreUnavailable as exc:
            logger.error("store_unavailable", extra={"route": fn.__name__, "error": str(exc)})
            return error(503, "store unavailable, retry later")

    return wrapper
