"""Two `run` processes on one spool never send the same head twice: the forwarder's lease, on SQLite and a
real PostgreSQL, with two connections (as two processes have), driven by a deterministic interleaving.

Forwarder A drains the spool; at every step k of it (each store call and each POST), forwarder B runs a
whole drain of its own before A's step goes on. In a second enumeration A crashes at step k (its lease
stays behind until it expires) and B takes the spool over.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.sqlite import SqliteStore
from cellkit.ports import CellStore, HttpResponse, SpoolItem
from cellkit.services.forwarder import Forwarder
from tests.cellkit.conftest import SECRET, T0_US, pg_dsn

ENVELOPES = 7
BATCH = 3


class Crash(Exception):
    pass


class Stepping:
    """A's store (or transport): calls ``hook`` with the step's name before every method call."""

    def __init__(self, inner: Any, hook: Callable[[str], None]) -> None:
        self._inner, self._hook = inner, hook

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name == "transaction":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._hook(name)
            return attr(*args, **kwargs)

        return call


class Edge:
    """Accepts every batch and records which forwarder posted which envelope ids."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []  # (forwarder, envelope id)

    def transport(self, who: str) -> Any:
        edge = self

        class Recorder:
            def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                        timeout: float) -> HttpResponse:
                edge.posted += [(who, env["id"]) for env in json.loads(body or b"[]")]
                return HttpResponse(202, b'{"accepted": 1}', {})

        return Recorder()


@pytest.fixture(params=["sqlite", "postgres"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CellStore]]:
    """Opens one more connection (a process's own) to the same fresh database."""
    opened: list[CellStore] = []
    if request.param == "sqlite":
        path = str(tmp_path / f"spool-{uuid.uuid4().hex[:6]}.db")

        def open_one() -> CellStore:
            opened.append(SqliteStore(path))
            return opened[-1]
    else:
        from cellkit.adapters.postgres import PostgresStore

        dsn = pg_dsn(request.getfixturevalue("pg_server"), "lease")

        def open_one() -> CellStore:
            opened.append(PostgresStore(dsn))
            return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def forwarder(store: Any, edge: Edge, who: str, clock: ManualClock, transport: Any = None) -> Forwarder:
    client = EdgeClient("http://edge", SECRET, "cell-l", transport or edge.transport(who), clock, timeout=10)
    return Forwarder(store, client, clock, lambda _: None, logging.getLogger(f"lease.{who}"), random.Random(1),
                     batch=BATCH, holder=who)


def scenario(connect: Callable[[], CellStore], at_step: int, crash: bool) -> tuple[Edge, int, list[str], CellStore]:
    """Runs A with B interleaved (or A crashing) at step ``at_step``; returns the edge, A's step count, A's
    step names and B's store."""
    a_store, b_store = connect(), connect()
    for table in ("spool", "spool_aside", "leases"):  # the fixture's database serves every scenario
        with a_store.transaction():
            a_store._exec(f"DELETE FROM {table}")  # type: ignore[attr-defined]
    a_store.spool_put([SpoolItem(f"e{i}", json.dumps({"id": f"e{i}"})) for i in range(ENVELOPES)])
    clock, edge = ManualClock(T0_US), Edge()
    b = forwarder(b_store, edge, "B", clock)
    steps: list[str] = []

    def hook(name: str) -> None:
        if len(steps) == at_step:
            if crash:
                raise Crash(name)
            b.drain()
        steps.append(name)

    a = forwarder(Stepping(a_store, hook), edge, "A", clock, Stepping(edge.transport("A"), hook))
    try:
        a.drain()
    except Crash:
        clock.advance_us(a.lease_us)  # A is gone; its lease runs out
    b.drain()
    if not crash:
        a.drain()
    return edge, len(steps), steps, b_store


def test_a_second_process_at_every_step_never_sends_a_head_twice(connect: Callable[[], CellStore]) -> None:
    _, total, steps, _ = scenario(connect, -1, crash=False)  # A alone: its steps
    assert steps[:4] == ["spool_depth", "lease_acquire", "spool_head", "request"] and total >= 12, steps
    for k in range(total + 1):
        edge, _, _, store = scenario(connect, k, crash=False)
        ids = [i for _, i in edge.posted]
        assert sorted(ids) == [f"e{i}" for i in range(ENVELOPES)], (k, edge.posted)  # each exactly once
        assert store.spool_depth() == 0 and store.aside() == []


def test_a_crash_at_every_step_leaves_the_spool_to_the_other_process(connect: Callable[[], CellStore]) -> None:
    total = scenario(connect, -1, crash=False)[1]
    for k in range(total + 1):
        edge, _, steps, store = scenario(connect, k, crash=True)
        ids = [i for _, i in edge.posted]
        assert set(ids) == {f"e{i}" for i in range(ENVELOPES)} and store.spool_depth() == 0, k
        twice = sorted({i for i in ids if ids.count(i) > 1})
        # Only a crash between the edge's 202 and the delete re-sends (that batch, counted once by the edge).
        assert bool(twice) == (steps[-1:] == ["request"]) and len(twice) <= BATCH, (k, steps, edge.posted)
