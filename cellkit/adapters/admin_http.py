"""A minimal HTTP server for the halt handler (stdlib), for cells that run the kit as their control
plane's admin endpoint: `python -m cellkit serve-admin`. A cell with its own web framework mounts
`AdminHandler.handle` under /admin/halt-org and /admin/resume-org instead."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handle = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]
MAX_BODY = 64 * 1024


def serve(handle: Handle, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving on a daemon thread; `server.server_address` has the bound port (0 picks one)."""

    class Admin(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            try:
                status, answer = handle(self.path, dict(self.headers.items()), body)
            except Exception as exc:  # the edge retries any non-2xx: say what failed
                status, answer = 503, {"error": f"halt handler failed: {exc}"}
            self._answer(status, answer)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # the handler logs structured lines itself
            return

    server = ThreadingHTTPServer((host, port), Admin)
    threading.Thread(target=server.serve_forever, name="admin-http", daemon=True).start()
    return server
