"""HTTP for the emulator: Stripe's form encoding, idempotency keys, injected faults."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from stripe_emulator.faults import Fault, Remembered
from stripe_emulator.forms import nest
from stripe_emulator.objects import StripeFailure, listing
from stripe_emulator.state import State

IDEMPOTENCY_TTL = 86400


@dataclass
class Emulator:
    state: State = field(default_factory=State)
    faults: list[Fault] = field(default_factory=list)
    latency_ms: int = 0
    idempotency: dict[str, Remembered] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        r = Rule
        self.url_map = Map(
            [
                r("/v1/billing/meters", endpoint="meters", methods=["GET", "POST"]),
                r("/v1/billing/meters/<mid>", endpoint="meter", methods=["GET"]),
                r("/v1/billing/meters/<mid>/event_summaries", endpoint="summaries", methods=["GET"]),
                r("/v1/billing/meter_events", endpoint="meter_events", methods=["POST"]),
                r("/v1/billing/meter_event_adjustments", endpoint="adjustments", methods=["POST"]),
                r("/v1/products", endpoint="products", methods=["GET", "POST"]),
                r("/v1/products/<pid>", endpoint="product", methods=["GET"]),
                r("/v1/prices", endpoint="prices", methods=["GET", "POST"]),
                r("/v1/prices/<pid>", endpoint="price", methods=["GET"]),
                r("/v1/customers", endpoint="customers", methods=["GET", "POST"]),
                r("/v1/customers/<cid>", endpoint="customer", methods=["GET", "POST"]),
                r("/v1/customers/<cid>/balance_transactions", endpoint="balance", methods=["GET", "POST"]),
                r("/v1/subscriptions", endpoint="subscriptions", methods=["GET", "POST"]),
                r("/v1/subscriptions/<sid>", endpoint="subscription", methods=["GET", "DELETE"]),
                r("/v1/webhook_endpoints", endpoint="webhooks", methods=["GET", "POST"]),
                r("/v1/webhook_endpoints/<wid>", endpoint="webhook", methods=["GET", "POST", "DELETE"]),
                r("/v2/core/events/<eid>", endpoint="v2_event", methods=["GET"]),
                r("/_emulator/event_destinations", endpoint="e_destinations", methods=["POST"]),
                r("/_emulator/thin_events", endpoint="e_thin_events", methods=["GET"]),
                r("/_emulator/reset", endpoint="e_reset", methods=["POST"]),
                r("/_emulator/clock", endpoint="e_clock", methods=["POST"]),
                r("/_emulator/faults", endpoint="e_faults", methods=["POST"]),
                r("/_emulator/latency", endpoint="e_latency", methods=["POST"]),
                r("/_emulator/totals", endpoint="e_totals", methods=["GET"]),
                r("/_emulator/meter_events", endpoint="e_events", methods=["GET"]),
                r("/_emulator/requests", endpoint="e_requests", methods=["GET"]),
            ]
        )

    # --- WSGI ---------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except StripeFailure as exc:
            response = self.json(exc.status, exc.body(), exc.headers)
        except _Drop:
            # Shut the socket so the client sees the connection drop after the work was done;
            # werkzeug's write then fails as a dropped connection, quietly.
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            start_response("500 Internal Server Error", [])
            return [b""]
        except HTTPException as exc:
            response = self.json(
                exc.code or 500,
                {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({request.path})."}},
            )
        return response(environ, start_response)

    @staticmethod
    def json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        endpoint, args = adapter.match()
        if endpoint.startswith("e_"):
            return self.json(200, getattr(self, endpoint)(request))
        with self.lock:
            self.requests[f"{request.method} {adapter.match(return_rule=True)[0].rule}"] += 1
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            raise StripeFailure(401, "You did not provide an API key.", "invalid_request_error")
        params = nest(
            parse_qsl(
                request.get_data(as_text=True) if request.method == "POST" else request.query_string.decode(),
                keep_blank_values=True,
            )
        )
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fault = self.take_fault(request)
        if fault and fault.kind == "status":
            self.remember_failure(key, request, params, fault.status)
            raise StripeFailure(fault.status, "Injected server error.", "api_error")
        if fault and fault.kind == "rate_limit":
            raise StripeFailure(
                429,
                "Too many requests.",
                "invalid_request_error",
                "rate_limit",
                {"Retry-After": str(fault.retry_after)},
            )
        delay = self.latency_ms + (fault.delay_ms if fault and fault.kind == "slow" else 0)
        status, body = self.idempotent(
            key, request, params, lambda: self.handle(endpoint, request.method, dict(args), params, delay)
        )
        if fault and fault.kind == "accept_then_drop":
            raise _Drop()
        headers = {"Idempotent-Replayed": "true"} if status < 0 else {}
        return self.json(abs(status), body, headers)

    def take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path == request.path and fault.method == request.method and fault.count != 0:
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    @staticmethod
    def fingerprint(request: Request, params: dict[str, Any]) -> str:
        return hashlib.sha256(f"{request.method} {request.path} {sorted(params.items())!r}".encode()).hexdigest()

    def remember_failure(self, key: str | None, request: Request, params: dict[str, Any], status: int) -> None:
        """Stripe keeps a 5xx that began executing under its key and replays it for 24 h."""
        if key is None or status < 500:
            return
        body = StripeFailure(status, "Injected server error.", "api_error").body()
        with self.lock:
            if key not in self.idempotency:
                self.idempotency[key] = Remembered(self.fingerprint(request, params), status, body, True,
                                                   self.state.now())

    def idempotent(
        self, key: str | None, request: Request, params: dict[str, Any], run: Callable[[], tuple[int, dict[str, Any]]]
    ) -> tuple[int, dict[str, Any]]:
        """Replay the first answer for a seen key (negative status marks a replay)."""
        if key is None:
            return self.guarded(run)
        fingerprint = self.fingerprint(request, params)
        with self.lock:
            seen = self.idempotency.get(key)
            if seen and self.state.now() - seen.at > IDEMPOTENCY_TTL:
                seen = None
            if seen is not None:
                if seen.fingerprint != fingerprint:
                    raise StripeFailure(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                        "idempotency_error",
                    )
                if not seen.done:
                    raise StripeFailure(
                        409,
                        "There is currently another in-progress request using this Idempotent Key.",
                        "invalid_request_error",
                        "idempotency_key_in_use",
                    )
                return -seen.status, seen.body or {}
            self.idempotency[key] = Remembered(fingerprint, at=self.state.now())
        status, body = self.guarded(run)
        with self.lock:
            # Stripe stores whatever the request produced once it began executing, a 5xx included.
            self.idempotency[key] = Remembered(fingerprint, status, body, True, self.state.now())
        return status, body

    @staticmethod
    def guarded(run: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
        try:
            return run()
        except StripeFailure as exc:
            if exc.headers:
                raise
            return exc.status, exc.body()

    # --- resources ------------------------------------------------------------------
    def handle(
        self, endpoint: str, method: str, args: dict[str, str], p: dict[str, Any], delay_ms: int
    ) -> tuple[int, dict[str, Any]]:
        if endpoint == "meter_events":
            return 200, self.meter_event(p, delay_ms)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        s = self.state
        post = method == "POST"
        with s.lock:
            table: dict[str, Callable[[], Any]] = {
                "meters": lambda: s.create_meter(p) if post else listing("/v1/billing/meters", list(s.meters.values())),
                "meter": lambda: s.meter(args.get("mid", "")),
                "summaries": lambda: listing("/v1/billing/meter_event_summaries", s.summaries(args["mid"], p)),
                "adjustments": lambda: s.adjust(p),
                "products": lambda: s.create_product(p) if post else listing("/v1/products", list(s.products.values())),
                "product": lambda: s.products.get(args["pid"]) or _missing("product", args["pid"]),
                "prices": lambda: s.create_price(p) if post else listing("/v1/prices", s.list_prices(p)),
                "price": lambda: s.prices.get(args["pid"]) or _missing("price", args["pid"]),
                "customers": lambda: (
                    s.create_customer(p) if post else listing("/v1/customers", list(s.customers.values()))
                ),
                "customer": lambda: s.update_customer(args["cid"], p) if post else s.customer(args["cid"]),
                "balance": lambda: (
                    s.add_balance(args["cid"], p)
                    if post
                    else listing(f"/v1/customers/{args['cid']}/balance_transactions", s.balance_txns[args["cid"]])
                ),
                "subscriptions": lambda: (
                    s.create_subscription(p) if post else listing("/v1/subscriptions", s.list_subscriptions(p))
                ),
                "subscription": lambda: (
                    s.cancel_subscription(args["sid"]) if method == "DELETE" else s.subscription(args["sid"])
                ),
                "webhooks": lambda: (
                    s.create_webhook_endpoint(p) if post
                    else listing("/v1/webhook_endpoints", list(s.webhook_endpoints.values()))
                ),
                "webhook": lambda: self.webhook_endpoint(method, args["wid"], p),
                "v2_event": lambda: s.reports.event(args["eid"]),
            }
            return 200, table[endpoint]()

    def webhook_endpoint(self, method: str, wid: str, p: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        if method == "DELETE":
            return s.delete_webhook_endpoint(wid)
        return s.update_webhook_endpoint(wid, p) if method == "POST" else s.webhook_endpoint(wid)

    def meter_event(self, p: dict[str, Any], delay_ms: int) -> dict[str, Any]:
        s = self.state
        with s.lock:
            name, customer, value, ts, identifier = s.check_meter_event(p)
            slot = (customer, name)
            if slot in s.in_flight:
                raise StripeFailure(
                    429,
                    "Only one concurrent meter event request per customer and meter.",
                    "invalid_request_error",
                    "rate_limit",
                    {"Retry-After": "1"},
                )
            s.in_flight.add(slot)
        try:
            if delay_ms:
                time.sleep(delay_ms / 1000)
            with s.lock:
                return s.record_meter_event(name, customer, value, ts, identifier)
        finally:
            with s.lock:
                s.in_flight.discard(slot)

    # --- emulator control -------------------------------------------------------------
    def e_reset(self, _: Request) -> dict[str, Any]:
        with self.lock:
            self.state.__init__()  # type: ignore[misc]
            self.faults.clear()
            self.latency_ms = 0
            self.idempotency.clear()
            self.requests.clear()
        return {"ok": True}

    def e_clock(self, request: Request) -> dict[str, Any]:
        now = (_body(request) or {}).get("now")
        self.state.fixed_now = None if now is None else int(now)
        return {"now": self.state.now()}

    def e_faults(self, request: Request) -> dict[str, Any]:
        rules = _body(request) or []
        with self.lock:
            self.faults.extend(Fault(**{"method": "POST", **rule}) for rule in rules)
        return {"faults": len(self.faults)}

    def e_latency(self, request: Request) -> dict[str, Any]:
        self.latency_ms = int((_body(request) or {}).get("latency_ms", 0))
        return {"latency_ms": self.latency_ms}

    def e_totals(self, _: Request) -> dict[str, Any]:
        with self.state.lock:
            return {"totals": self.state.totals(), "events": sum(not e.cancelled for e in self.state.events.values())}

    def e_events(self, _: Request) -> dict[str, Any]:
        with self.state.lock:
            return {
                "events": [
                    {
                        "identifier": e.identifier,
                        "event_name": e.event_name,
                        "customer": e.customer,
                        "value": f"{e.value:.6f}",
                        "timestamp": e.timestamp,
                        "cancelled": e.cancelled,
                    }
                    for e in self.state.events.values()
                ]
            }

    def e_destinations(self, request: Request) -> dict[str, Any]:
        body = _body(request) or {}
        with self.state.lock:
            return self.state.reports.register(body.get("url"), str(body["secret"]))

    def e_thin_events(self, _: Request) -> dict[str, Any]:
        with self.state.lock:
            return {"deliveries": list(self.state.reports.deliveries)}

    def e_requests(self, _: Request) -> dict[str, Any]:
        with self.lock:
            return {"requests": dict(self.requests)}


def _body(request: Request) -> Any:
    """Control bodies are JSON whatever their Content-Type says."""
    raw = request.get_data()
    return json.loads(raw) if raw else None


class _Drop(Exception):
    """Close the connection without an answer (the request was processed)."""


def _missing(kind: str, rid: str) -> dict[str, Any]:
    raise StripeFailure(404, f"No such {kind}: '{rid}'", code="resource_missing")
