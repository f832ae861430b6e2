"""A small in-process edge for the cell kit's HTTP clients, on a real socket.

It checks every request's HMAC with the edge's own verifier
(chalicelib.core.hmac_auth, CONTRACT section 1), dedupes ingested envelopes by id
the way the edge does, and answers from a script of injected faults.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chalicelib.core.hmac_auth import AuthError, verify_body, verify_get


@dataclass
class EdgeState:
    secret: str
    now: Callable[[], int] = lambda: int(time.time())
    faults: list[tuple[str, Any]] = field(default_factory=list)  # consumed one per /ingest request
    always: tuple[str, Any] | None = None  # the fault of every /ingest request once `faults` is empty
    max_body: int = 10_000_000
    refuse: set[str] = field(default_factory=set)  # envelope ids the edge answers 400 for (the whole request)
    retry_after: str = "2"  # sent with an injected 429
    received: dict[str, dict[str, Any]] = field(default_factory=dict)  # envelope id -> envelope (deduped)
    deliveries: int = 0  # envelopes received, duplicates included
    ingest_requests: int = 0
    ingest_at: list[float] = field(default_factory=list)  # time.monotonic() of each /ingest request
    auth_failures: int = 0
    cell_ids: set[str] = field(default_factory=set)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    parity: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    parity_reports: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    get_paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    down: bool = False


class _Handler(BaseHTTPRequestHandler):
    state: EdgeState

    def log_message(self, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def do_GET(self) -> None:
        st = self.state
        if st.down:
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            verify_get(self._headers(), parts.path, params, st.secret, st.now())
        except AuthError as exc:
            st.auth_failures += 1
            return self._answer(exc.status, {"error": exc.message})
        st.get_paths.append(self.path)
        if parts.path == "/internal/org-policy":
            policy = st.policies.get(params.get("org_id", ""))
            return self._answer(200, policy) if policy else self._answer(404, {"error": "unknown org"})
        if parts.path == "/internal/usage-parity":
            window = (int(params["from"]), int(params["to"]))
            orgs = [{"org_id": o, "gb_seconds": g, "samples": 1} for o, g in st.parity.get(window, {}).items()]
            return self._answer(200, {"window": {"from": window[0], "to": window[1]}, "orgs": orgs,
                                      "as_of": st.now()})
        return self._answer(404, {"error": "no route"})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self) -> None:
        body = self._body()
        if not self._verified(body):
            return
        cell_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
        self.state.cells[cell_id] = json.loads(body)
        self._answer(200, {"cell_id": cell_id})

    def _verified(self, body: bytes) -> bool:
        try:
            verify_body(self._headers(), body, self.state.secret, self.state.now())
        except AuthError as exc:
            self.state.auth_failures += 1
            self._answer(exc.status, {"error": exc.message})
            return False
        return True

    def do_POST(self) -> None:
        st = self.state
        body = self._body()
        path = urlsplit(self.path).path
        if path == "/ingest":
            return self._ingest(body)
        if not self._verified(body):
            return None
        if path == "/internal/parity-reports":
            report = json.loads(body)
            st.parity_reports[(report["cell_id"], report["window"]["from"], report["window"]["to"])] = report
            return self._answer(200, {"stored": True})
        return self._answer(404, {"error": "no route"})

    def _fault(self) -> tuple[str, Any] | None:
        with self.state.lock:
            return self.state.faults.pop(0) if self.state.faults else self.state.always

    def _ingest(self, body: bytes) -> None:
        st = self.state
        with st.lock:
            st.ingest_requests += 1
            st.ingest_at.append(time.monotonic())
        fault = self._fault()
        # A "sleep" fault stores the batch and then answers too late: the cell's timeout loses the 202.
        late = fault[1] if fault and fault[0] == "sleep" else 0
        if fault and fault[0] == "hang":  # an edge that never answers (until the test stops it)
            time.sleep(fault[1])
            self.close_connection = True
            return None
        if fault and fault[0] == "raw":  # not HTTP: a garbage status line, or a body cut short
            self.wfile.write(fault[1])
            self.wfile.flush()
            self.close_connection = True
            return None
        if fault and not late:
            extra = {"Retry-After": st.retry_after} if fault[1] == 429 else (fault[2] if len(fault) > 2 else {})
            return self._answer(fault[1], {"error": f"injected {fault[1]}"}, extra)
        if len(body) > st.max_body:
            return self._answer(413, {"error": "body too large"})
        if not self._verified(body):
            return None
        if not self.headers.get("X-Cell-Id"):
            return self._answer(400, {"error": "missing X-Cell-Id"})
        st.cell_ids.add(self.headers["X-Cell-Id"])
        items = json.loads(body, parse_float=Decimal)
        refused = sorted(env["id"] for env in items if env["id"] in st.refuse)
        if refused:
            return self._answer(400, {"error": f"envelopes refused: {refused}"})
        with st.lock:
            for env in items:
                st.deliveries += 1
                previous = st.received.setdefault(env["id"], env)
                assert previous == env, f"same id, different content: {env['id']}"
        if late:
            time.sleep(late)
            self.close_connection = True
            return None
        return self._answer(202, {"accepted": len(items)})


class FakeEdge:
    def __init__(self, secret: str, now: Callable[[], int] | None = None) -> None:
        self.state = EdgeState(secret=secret)
        if now is not None:
            self.state.now = now
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        # Polled every 50 ms for shutdown (serve_forever's default, 0.5 s, was half a second of every test's end).
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
