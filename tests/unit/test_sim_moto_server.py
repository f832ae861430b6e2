"""The local stack's moto answers one request at a time (sim/moto_server.py), as DynamoDB is atomic per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sim.moto_server import serialized


def test_requests_from_many_connections_are_handled_one_at_a_time() -> None:
    inside, most = [0], [0]
    guard = threading.Lock()
    go = threading.Barrier(8)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.005)  # moto between its condition check and its write
        start_response("200 OK", [])
        yield environ["n"].encode()
        with guard:
            inside[0] -= 1

    wrapped = serialized(app)
    answers: list[bytes] = []

    def request(n: int) -> None:
        go.wait()
        answers.extend(wrapped({"n": str(n)}, lambda *_: None))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1, "two requests inside moto at once"
    assert sorted(answers) == [str(n).encode() for n in range(8)]  # every body read inside the lock
