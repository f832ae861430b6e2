"""moto's server for the local stack, one request at a time.

moto checks a condition and then writes, unlocked: behind its threaded server two requests can both pass
one condition, and a transaction can copy a table while another request writes to it (in `make run` moto
answered 500, "dictionary changed size during iteration"). Real DynamoDB applies each request atomically;
one lock around moto's application does the same here, while connections stay concurrent.

Usage: python -m sim.moto_server HOST PORT
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialized(app: WsgiApp) -> WsgiApp:
    """`app`, answering one request at a time (the body is read inside the lock too)."""
    lock = threading.Lock()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    return application


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    host, port = argv
    os.environ.setdefault("MOTO_PORT", port)  # as moto.server does: moto builds some URLs from it
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, int(port), serialized(app), threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
