"""What every route shares: JSON answers, HMAC checks, and error mapping."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec

from chalice import Blueprint, Chalice, Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.core.hmac_auth import AuthError, verify_body, verify_get
from chalicelib.core.limits import JsonBodyError
from chalicelib.core.telemetry import http_points
from chalicelib.observability import logger, publish
from chalicelib.ports import StoreRejected, StoreUnavailable
from chalicelib.services.parity import WindowError

P = ParamSpec("P")
Middleware = Callable[[Request, Callable[[Request], Response]], Response]


JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}
Handler = Callable[..., Response]


class EdgeApp(Chalice):
    """The edge's Chalice app with its container: one per app, built by whoever makes the app (app.py, from the
    environment at cold start; a test, from its own adapters) and handed to its routes, middlewares and schedules."""

    def __init__(self, container: Container) -> None:
        # Powertools owns the "edge-billing" logger (observability.py): Chalice's own set-up would add a stdout
        # handler and reset its level to ERROR on every app made (a test makes many) unless one is found on
        # the sys.stdout of the moment; in a Lambda it found Powertools' and did nothing.
        super().__init__(app_name="edge-billing", configure_logs=False)
        self.container = container


class Routes:
    """One module's routes, declared at import beside their handlers as Chalice's decorators are, and made into a
    fresh Blueprint for each app, closing over that app's container: a handler is
    `handler(request, container, **uri_params)`, so it reads no global and a test calls it like any function.

    Why not Chalice's module-level Blueprint: it registers on one app only (registering it again loses the routes'
    methods) and answers `current_request` from the app it was registered to last; a container per app needs a
    blueprint per app, and this keeps each module's routes where they were declared."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.declared: list[tuple[str, Handler, dict[str, Any]]] = []

    def route(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        def declare(handler: Handler) -> Handler:
            self.declared.append((path, handler, options))
            return handler

        return declare

    def blueprint(self, container: Container) -> Blueprint:
        bp = Blueprint(self.name)
        for path, handler, options in self.declared:
            bp.route(path, **dict(options))(_view(bp, container, handler))
        return bp


def _view(bp: Blueprint, container: Container, handler: Handler) -> Callable[..., Response]:
    def view(**params: str) -> Response:
        return handler(bp.current_request, container, **params)

    view.__name__ = handler.__name__  # Chalice names the route by its view
    return view


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(body=body, status_code=status, headers=JSON)


def error(status: int, message: str, **extra: Any) -> Response:
    return answer(status, {"error": message, **extra})


def lowered(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}


def raw_body(request: Request) -> bytes:
    body = request.raw_body or b""
    return body.encode() if isinstance(body, str) else body


def check_body_hmac(request: Request, svc: Container) -> None:
    verify_body(
        lowered(request.headers),
        raw_body(request),
        svc.settings.secret("EVENT_SECRET"),
        svc.now(),
        svc.settings.HMAC_WINDOW_SECONDS,
    )


def query_pairs(request: Request) -> list[tuple[str, str]]:
    """Every (key, value) the request carries: a repeated key keeps all its values (dict() keeps the last)."""
    params = request.query_params
    if not params:
        return []
    return [(str(k), str(v)) for k in params for v in params.getlist(k)]


def single_params(pairs: list[tuple[str, str]], names: tuple[str, ...]) -> dict[str, str]:
    """The parameters a route reads (`names`), each given once: a repeated one is ambiguous
    (which value did the signer mean?); others are covered by the signature and ignored."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in names:
            continue
        if key in out:
            raise AuthError(400, f"query parameter {key!r} is given more than once")
        out[key] = value
    return out


def check_get_hmac(request: Request, path: str, svc: Container) -> None:
    verify_get(
        lowered(request.headers),
        path,
        query_pairs(request),
        svc.settings.secret("EVENT_SECRET"),
        svc.now(),
        svc.settings.HMAC_WINDOW_SECONDS,
    )


def signed_query(request: Request, path: str, svc: Container, names: tuple[str, ...]) -> dict[str, str]:
    """The parameters a signed GET route reads: only once its signature holds is any of them looked at."""
    check_get_hmac(request, path, svc)
    return single_params(query_pairs(request), names)


def json_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Map auth failures to 400/401, a malformed window to 400, store failures to 503 (only the
    retryable ones), always as JSON."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except AuthError as exc:
            return error(exc.status, exc.message)
        except (JsonBodyError, WindowError) as exc:
            return error(400, str(exc))
        except StoreRejected as exc:
            # A write DynamoDB refuses for good (a key or item it can never take): retrying cannot help.
            logger.warning("store_rejected", extra={"route": fn.__name__, "error": str(exc)})
            return error(400, f"request cannot be stored: {exc}")
        except StoreUnavailable as exc:
            logger.error("store_unavailable", extra={"route": fn.__name__, "error": str(exc)})
            return error(503, "store unavailable, retry later")

    return wrapper


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or body.get("Code") or "request failed")
    return "internal error" if not body else str(body)[:200]


def json_error_bodies(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice middleware: every non-2xx answer is a JSON body with "error".

    Chalice answers some requests itself (405, 415, an unhandled exception's 500)
    with `{"Code", "Message"}`; callers (the cells' forwarder, Stripe, operators)
    read `error`, so those are rewritten here, keeping Chalice's code as `code`.
    """
    try:
        response = get_response(event)
    except Exception as exc:  # the last line of defence: never an HTML or empty 500
        logger.exception("unhandled_error", extra={"error_type": type(exc).__name__})
        return error(500, "internal error")
    if response.status_code < 300 or (isinstance(response.body, dict) and "error" in response.body):
        return response
    if response.status_code >= 500:
        logger.error("unhandled_error", extra={"status": response.status_code, "body": _error_text(response.body)})
    code = response.body.get("Code") if isinstance(response.body, dict) else None
    extra = {"code": code} if code else {}
    # The message of a 500 is Chalice's generic text (or a traceback in debug mode): not for callers.
    text = "internal error" if response.status_code >= 500 else _error_text(response.body)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return Response(body={"error": text, **extra}, status_code=response.status_code, headers={**headers, **JSON})


def http_metrics(svc: Container) -> Middleware:
    """Chalice middleware, for the app whose container it is handed: webhook failures, conflicts and unusable
    events, and store outages, counted from the answer itself, so no route needs a metrics call of its own."""

    def count(event: Request, get_response: Callable[[Request], Response]) -> Response:
        response = get_response(event)
        points = http_points(event.path, response.status_code, response.body)
        if points:
            publish(points, svc.settings.WORKER_ENV)
        return response

    return count
