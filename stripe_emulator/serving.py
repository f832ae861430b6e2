"""Serving the emulator on loopback: in a thread (tests, the local stack) or as `python -m stripe_emulator`."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from stripe_emulator.server import Emulator
from stripe_emulator.state import State


@dataclass
class EmulatorServer:
    server: BaseWSGIServer
    app: Emulator
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def state(self) -> State:
        return self.app.state

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def check_loopback(host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to listen on {host}: the emulator is for loopback only")


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, as api.stripe.com: a client reuses its connection instead of a TCP setup per call."""

    protocol_version = "HTTP/1.1"


class QuietHandler(KeepAliveHandler):
    """No access log line per request (tests, benchmarks)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def start_in_thread(port: int = 0, host: str = "127.0.0.1") -> EmulatorServer:
    check_loopback(host)
    app = Emulator()
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="stripe-emulator")
    thread.start()
    return EmulatorServer(server, app, thread)
