"""python -m stripe_emulator --host 127.0.0.1 --port 12111"""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from stripe_emulator.server import Emulator
from stripe_emulator.serving import KeepAliveHandler, QuietHandler, check_loopback


def main() -> None:
    parser = argparse.ArgumentParser(description="Stripe API emulator (loopback only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--quiet", action="store_true", help="no access log line per request")
    args = parser.parse_args()
    check_loopback(args.host)
    handler = QuietHandler if args.quiet else KeepAliveHandler
    run_simple(args.host, args.port, Emulator(), threaded=True, use_reloader=False, request_handler=handler)


if __name__ == "__main__":
    main()
