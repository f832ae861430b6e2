"""A fake edge on a real socket for `python -m cellkit conformance`: the cell's forwarder points at it.

POST /ingest goes to `Observer` (cellkit/core/conformance_script.py), which checks it and picks the
scripted answer. The other routes a cell calls are checked for their signature and answered as the edge
would (org policy: pro; parity: no usage; parity reports and status: stored), so a whole cell can run
against it. Loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cellkit.core.conformance import Violation, check_signature
from cellkit.core.conformance_script import Observer

STATUS_KEYS = {"authority": str, "billers_running": bool, "billed_through": int, "pending_billable": int,
               "spool_depth": int}


def check_status(body: Any) -> list[Violation]:
    """CONTRACT 8: PUT /internal/cells/{id}'s body."""
    if not isinstance(body, dict):
        return [Violation("status", "the status body is not a JSON object")]
    wrong = [k for k, t in STATUS_KEYS.items() if not isinstance(body.get(k), t) or (t is int and body[k] is True)]
    if wrong or body.get("authority") not in ("cell", "edge"):
        return [Violation("status", f"status fields missing or of the wrong type: {', '.join(wrong) or 'authority'}")]
    return []


@dataclass
class ConformanceEdge:
    secret: str
    now: Callable[[], int] = lambda: int(time.time())
    observer: Observer = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.observer = Observer(self.secret)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        with self.lock:
            if method == "POST" and parts.path == "/ingest":
                status = self.observer.ingest(headers, body, self.now(), time.monotonic())
                return status, {"error": f"scripted {status}"} if status != 202 else {"accepted": True}
            message = body if method != "GET" else (parts.path + ("?" + parts.query if parts.query else "")).encode()
            self.observer.flag(check_signature(headers, message, self.secret, self.now()))
            if method == "PUT" and parts.path.startswith("/internal/cells/"):
                try:
                    self.observer.flag(check_status(json.loads(body)))
                except ValueError:
                    self.observer.flag([Violation("status", "the status body is not JSON")])
        if parts.path == "/internal/org-policy":
            return 200, {"plan": "pro", "maxMemoryMb": 65536}
        if parts.path == "/internal/usage-parity":
            return 200, {"orgs": []}
        return 200, {"ok": True}

    def violations(self) -> list[Violation]:
        with self.lock:
            return [*self.observer.violations, *self.observer.missing()]

    def start(self, port: int = 0) -> str:
        edge = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = edge.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                             body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="conformance-edge").start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
