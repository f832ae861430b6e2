"""The forwarder against a real-socket fake edge that verifies HMAC and dedupes by id."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.memory import MemoryStore
from cellkit.ports import CellStore, SpoolItem
from cellkit.services.forwarder import Forwarder
from tests.cellkit.conftest import SECRET, Captured
from tests.cellkit.fake_edge import FakeEdge


def items(n: int, pad: int = 0) -> list[SpoolItem]:
    return [SpoolItem(f"e{i:04d}", json.dumps({"id": f"e{i:04d}", "type": "note", "pad": "x" * pad}))
            for i in range(n)]


def forwarder(store: CellStore, edge: FakeEdge, clock: ManualClock, log: logging.Logger, sleeps: list[float],
              secret: str = SECRET, batch: int = 500, timeout: float = 5.0) -> Forwarder:
    client = EdgeClient(edge.url, secret, "cell-a", UrllibTransport(), clock, timeout=timeout)
    # One holder: these forwarders stand for one process restarted (the lease is tested in test_lease.py).
    return Forwarder(store, client, clock, sleeps.append, log, random.Random(1), batch=batch, holder="the-cell")


@pytest.fixture
def logs(log: tuple[logging.Logger, Captured]) -> tuple[logging.Logger, Captured]:
    return log


def test_retries_5xx_429_and_timeouts_until_delivered(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put(items(50))
    edge.state.faults = [("status", 503), ("status", 500), ("status", 429), ("sleep", 0.6), ("status", 502)]
    sleeps: list[float] = []
    fwd = forwarder(store, edge, clock, logs[0], sleeps, timeout=0.3)
    assert fwd.drain() == 50
    assert store.spool_depth() == 0
    assert sorted(edge.state.received) == [i.id for i in items(50)]
    assert fwd.stats.retries == 5 and len(sleeps) == 5
    assert sleeps[2] >= 2.0  # the 429's Retry-After is honoured
    assert 0.25 <= sleeps[0] < 0.5 and sleeps[4] >= 4.0  # exponential
    # The timed-out batch reached the edge before the answer was lost: re-sent, counted once.
    assert edge.state.deliveries == 100 and len(edge.state.received) == 50
    assert edge.state.cell_ids == {"cell-a"}


def test_network_errors_retry(clock: ManualClock, logs: tuple[logging.Logger, Captured]) -> None:
    dead = FakeEdge(SECRET, now=lambda: clock.now_us() // 1_000_000)
    dead.stop()  # nothing listens on its port any more
    store = MemoryStore()
    store.spool_put(items(3))
    sleeps: list[float] = []
    fwd = forwarder(store, dead, clock, logs[0], sleeps)
    for _ in range(4):
        assert fwd.pump() == 0
    assert store.spool_depth() == 3 and len(sleeps) == 4
    assert [r.status for r in logs[1].events("forward_retry")] == [None] * 4  # type: ignore[attr-defined]


def test_413_splits_in_order(edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]) -> None:
    store = MemoryStore()
    store.spool_put(items(40, pad=200))
    edge.state.max_body = 2_500  # about ten envelopes per request
    fwd = forwarder(store, edge, clock, logs[0], [])
    assert fwd.drain() == 40
    assert len(edge.state.received) == 40 and edge.state.deliveries == 40
    assert fwd.stats.statuses[413] >= 2 and store.aside() == []


def test_a_single_envelope_too_large_is_set_aside_not_dropped(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put([*items(2), SpoolItem("huge", json.dumps({"id": "huge", "pad": "x" * 5000}))])
    edge.state.max_body = 2_000
    fwd = forwarder(store, edge, clock, logs[0], [])
    fwd.drain()
    assert [a.id for a in store.aside()] == ["huge"] and store.aside()[0].reason.startswith("413")
    assert sorted(edge.state.received) == ["e0000", "e0001"]


def test_400_bisects_so_only_the_refused_envelopes_go_aside_and_alarm(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put(items(500))
    edge.state.refuse = {"e0007", "e0300", "e0301"}
    fwd = forwarder(store, edge, clock, logs[0], [])
    assert fwd.drain() == 497  # before: the whole batch of 500 went aside
    assert store.spool_depth() == 0 and len(edge.state.received) == 497
    assert [a.id for a in store.aside()] == ["e0007", "e0300", "e0301"]
    assert store.aside()[0].reason == "400: {\"error\": \"envelopes refused: ['e0007']\"}"
    alarms = logs[1].events("forward_batch_set_aside")
    assert [(a.alarm, a.envelopes, a.first_id, a.levelno) for a in alarms] == [  # type: ignore[attr-defined]
        (True, 1, i, logging.ERROR) for i in ("e0007", "e0300", "e0301")]
    assert fwd.stats.posts < 60  # a bisection: about 2 log2(500) requests per refused envelope


def test_retry_after_is_a_floor_without_a_60_s_cap(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put(items(2))
    edge.state.retry_after = "300"
    edge.state.faults = [("status", 429), ("status", 503, {"Retry-After": "120"}),
                         ("status", 500, {"Retry-After": "90"})]
    sleeps: list[float] = []
    assert forwarder(store, edge, clock, logs[0], sleeps).drain() == 2
    assert sleeps[0] == 300.0  # before: min(300, 60)
    assert sleeps[1] == 120.0  # a 503's Retry-After too
    assert sleeps[2] < 90  # a 500's carries no meaning in HTTP: plain backoff


def test_retry_after_as_an_http_date() -> None:
    from cellkit.ports import HttpResponse
    from cellkit.services.forwarder import MAX_RETRY_AFTER_S, _retry_after

    now = 1_795_564_800.0  # 2026-11-25T00:00:00Z
    assert _retry_after(HttpResponse(429, b"", {"retry-after": "Wed, 25 Nov 2026 00:05:00 GMT"}), now) == 300.0
    assert _retry_after(HttpResponse(429, b"", {"Retry-After": "Wed, 25 Nov 2026 00:00:00 GMT"}), now + 5) == 0.0
    assert _retry_after(HttpResponse(429, b"", {"Retry-After": "1e400"}), now) == 0.0  # inf: unreadable
    assert _retry_after(HttpResponse(429, b"", {"Retry-After": "999999999"}), now) == MAX_RETRY_AFTER_S
    assert _retry_after(HttpResponse(429, b"", {"Retry-After": "soon"}), now) == 0.0


def test_401_is_retried_and_alarmed(edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]) -> None:
    store = MemoryStore()
    store.spool_put(items(3))
    sleeps: list[float] = []
    rotated = forwarder(store, edge, clock, logs[0], sleeps, secret="an-old-secret")
    assert rotated.pump() == 0 and rotated.pump() == 0
    assert store.spool_depth() == 3 and edge.state.auth_failures == 2
    alarms = logs[1].events("forward_retry")
    assert [(a.status, a.alarm) for a in alarms] == [(401, True), (401, True)]  # type: ignore[attr-defined]
    # Clock skew: the edge sees a timestamp 10 minutes off and refuses; the batch waits.
    skewed = ManualClock(clock.now_us() - 600 * 1_000_000)
    assert forwarder(store, edge, skewed, logs[0], sleeps).pump() == 0
    assert forwarder(store, edge, clock, logs[0], sleeps).drain() == 3


class CrashOnDelete(MemoryStore):
    """The process dies after the edge's 202 and before the spool delete."""

    def spool_delete(self, ids: Sequence[str]) -> None:
        raise SystemExit("killed")


def test_crash_between_202_and_delete_resends_and_the_edge_counts_once(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    crashing = CrashOnDelete()
    crashing.spool_put(items(20))
    with pytest.raises(SystemExit):
        forwarder(crashing, edge, clock, logs[0], [], batch=8).pump()
    restarted = MemoryStore()
    restarted.st = crashing.st  # the durable spool as the crash left it
    assert forwarder(restarted, edge, clock, logs[0], [], batch=8).drain() == 20
    assert edge.state.deliveries == 28 and len(edge.state.received) == 20


@pytest.mark.parametrize("raw", [
    b"garbage, not a status line\r\n\r\n",  # BadStatusLine
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{\"acc",  # IncompleteRead of a 202
    b"HTTP/1.1 503 Unavailable\r\nContent-Length: 100\r\n\r\n{\"err",  # IncompleteRead of an error body
])
def test_a_malformed_answer_is_a_network_error_with_backoff_and_alarm(
    raw: bytes, edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put(items(3))
    edge.state.faults = [("raw", raw), ("raw", raw)]
    sleeps: list[float] = []
    fwd = forwarder(store, edge, clock, logs[0], sleeps)
    assert fwd.pump() == 0 and fwd.pump() == 0  # neither escapes the forwarder
    assert store.spool_depth() == 3 and len(sleeps) == 2 and sleeps[1] >= 0.5  # backed off, exponentially
    retries = logs[1].events("forward_retry")
    assert [(r.status, r.alarm, r.levelno) for r in retries] == [(None, True, logging.ERROR)] * 2  # type: ignore[attr-defined]
    assert "malformed" in retries[0].detail or "broken body" in retries[0].detail  # type: ignore[attr-defined]
    assert fwd.drain() == 3 and sorted(edge.state.received) == [i.id for i in items(3)]


def test_a_closed_connection_is_a_plain_network_error(
    edge: FakeEdge, clock: ManualClock, logs: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    store.spool_put(items(1))
    edge.state.faults = [("raw", b"")]  # RemoteDisconnected: no answer at all, a passing outage
    fwd = forwarder(store, edge, clock, logs[0], [])
    assert fwd.pump() == 0
    assert [(r.status, r.alarm) for r in logs[1].events("forward_retry")] == [(None, False)]  # type: ignore[attr-defined]
