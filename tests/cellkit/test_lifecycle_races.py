"""Every lifecycle call, a tick and a forward, raced against each other at every step, on SQLite and PostgreSQL.

Actor A runs on its own connection and is paused before its k-th statement (k = 0, 1, ... until it runs
through); meanwhile actor B runs on another connection until it finishes or waits for A's lock; then A goes on.
Afterwards every sandbox is stopped and its ticks (delivered to the edge or still in the spool) must tile its
scale events: no overlap, no gap, each tick at the size its scale event says, the sums equal to the microsecond.

On PostgreSQL (READ COMMITTED) a read-modify-write of the sandbox row fails this: a tick committed between a
resize's read and its write is undone, and an interval is billed twice (or, resized later, never).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.sql import SqlStore
from cellkit.adapters.sqlite import SqliteStore
from cellkit.services.forwarder import Forwarder
from cellkit.services.ticker import SandboxAlreadyRunning, SandboxNotRunning, Ticker
from tests.cellkit.conftest import SECRET, T0_US, pg_dsn
from tests.cellkit.fake_edge import FakeEdge
from tests.cellkit.tiling import assert_ticks_tile

US = 1_000_000
TICK_AT = T0_US + 20 * US
END = T0_US + 100 * US
ACTORS = ("start", "resize", "stop", "move", "tick", "forward")
STEPS = ("_begin", "_commit", "_rollback", "_raw_exec", "_raw_many", "_raw_query")
# What the seed and the actors write. The forwarder's lease too: each race's forwarder is a new holder on a
# clock that never moves, so a lease left by an earlier race kept every later forwarder standing by (it sent
# nothing in all but the first race of a test).
TABLES = ("spool", "spool_aside", "sandboxes", "sandbox_scale_events", "leases")
LOG = logging.getLogger("cellkit.test.races")


@dataclass
class World:
    """Two connections to one database (A's and B's) and the edge; ``reset`` restores the seeded scenario."""

    a: SqlStore
    b: SqlStore
    waiting: Callable[[SqlStore], bool]  # is this connection waiting for a lock (PostgreSQL)?
    edge: FakeEdge
    sqlite: bool
    seeded: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def reset(self) -> None:
        """Seeds the world the first time; afterwards writes the seed's rows back in one transaction (the seed
        is the same every race: its five commits, ~700 times a store, were most of this file's time)."""
        with self.a.transaction():
            for table in TABLES:
                self.a._raw_exec(f"DELETE FROM {table}", ())
            for table, rows in self.seeded.items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    self.a._raw_many(f"INSERT INTO {table} VALUES ({marks})", rows)
        if not self.seeded:
            seed(self.a)
            self.seeded.update({t: self.a._query(f"SELECT * FROM {t}") for t in TABLES})
        self.edge.state.received.clear()


def actor(name: str, store: SqlStore, edge: FakeEdge, life_at: int) -> Callable[[], object]:
    life = Ticker(store, "cell-a", "w1", ManualClock(life_at), LOG)
    clock = ManualClock(TICK_AT)
    if name == "start":  # s2 ran [T0, T0+5 s) and stopped: a restart (its row exists)
        return lambda: life.start("s2", "o2", "pro", 2048, 1, life_at)
    if name == "resize":
        return lambda: life.resize("s1", 4096, 2, life_at)
    if name == "stop":
        return lambda: life.stop("s1", life_at)
    if name == "move":
        return lambda: life.move("s1", "w2")
    if name == "tick":
        return Ticker(store, "cell-a", "w1", clock, LOG).tick
    client = EdgeClient(edge.url, SECRET, "cell-a", UrllibTransport(), clock)
    return Forwarder(store, client, clock, lambda _: None, LOG).pump


@dataclass
class Run:
    """One actor on its own thread; every statement passes through ``gate`` first."""

    store: SqlStore
    gate: Callable[[str], None]
    holds_lock: bool = False  # between a BEGIN and its COMMIT (SQLite: the database's write lock)
    in_statement: bool = False  # only a statement under way can be waiting for a lock
    done: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # set at every change the race waits for
    error: BaseException | None = None

    def __post_init__(self) -> None:
        for name in STEPS:
            self._wrap(name)

    def unwrap(self) -> None:
        for name in STEPS:
            delattr(self.store, name)

    def _wrap(self, name: str) -> None:
        inner = getattr(self.store, name)

        def step(*args: Any) -> Any:
            self.gate(name)
            self.in_statement = True
            self.wake.set()
            try:
                out = inner(*args)
            finally:
                self.in_statement = False
                self.wake.set()
            if name == "_begin":
                self.holds_lock = True
            elif name in ("_commit", "_rollback"):
                self.holds_lock = False
            return out

        setattr(self.store, name, step)

    def start(self, call: Callable[[], object]) -> threading.Thread:
        def body() -> None:
            try:
                call()
            except (SandboxNotRunning, SandboxAlreadyRunning):  # the other actor stopped or started it first
                pass
            except BaseException as exc:
                self.error = exc
            finally:
                self.done.set()
                self.wake.set()

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread


def wait_for(settled: Callable[[], bool], run: Run, what: str, blocked: Callable[[], bool] = lambda: False,
             timeout: float = 20.0) -> None:
    """Until ``settled()``, woken by ``run.wake`` (set after every change it reads), or ``blocked()``: a state
    outside this process (a PostgreSQL lock wait), asked once a statement of the run's has gone 2 ms without
    an end (before: every 1 ms throughout)."""
    deadline = time.monotonic() + timeout
    while not settled():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        woke = run.wake.wait(min(0.002, left) if run.in_statement else left)
        run.wake.clear()  # a change after this is seen by the next settled(), or sets it again
        if not woke and run.in_statement and blocked():
            return


def race(world: World, a_name: str, b_name: str, k: int, life_at: int) -> bool:
    """A paused before its statement k while B runs. Returns False when A finished before reaching step k."""
    world.reset()
    store_a, store_b = world.a, world.b
    paused, resume = threading.Event(), threading.Event()
    count = [0]

    def gate_a(_: str) -> None:
        if count[0] == k:
            paused.set()
            a.wake.set()
            resume.wait()
        count[0] += 1

    a = Run(store_a, gate_a)

    def gate_b(name: str) -> None:
        # SQLite: B's BEGIN IMMEDIATE would wait for A's write lock; hold it here until A is through instead
        # of sleeping in SQLite's busy handler (the same order, deterministically).
        if world.sqlite and name == "_begin" and a.holds_lock and not a.done.is_set():
            b_waits.set()
            b.wake.set()
            a.done.wait()

    b_waits = threading.Event()
    b = Run(store_b, gate_b)
    thread_a = a.start(actor(a_name, store_a, world.edge, life_at))
    wait_for(lambda: paused.is_set() or a.done.is_set(), a, "A to pause")
    reached = paused.is_set()
    thread_b = b.start(actor(b_name, store_b, world.edge, life_at))
    # PostgreSQL: a statement of B's may wait for A's row lock; pg_stat_activity says so.
    wait_for(lambda: b.done.is_set() or b_waits.is_set(), b, "B to finish or wait", lambda: world.waiting(store_b))
    resume.set()
    thread_a.join(30)
    thread_b.join(30)
    for run in (a, b):
        if run.error is not None:
            raise AssertionError(f"{a_name} paused at step {k}, {b_name} against it") from run.error
    a.unwrap()
    b.unwrap()
    check(store_b, world.edge, f"{a_name} paused at step {k}, {b_name} against it, lifecycle at {life_at - T0_US}")
    return reached


def seed(store: SqlStore) -> None:
    """s1 running at 1 GB since T0, ticked to T0+10 s; s2 ran [T0, T0+5 s) and stopped."""
    ticker = Ticker(store, "cell-a", "w1", ManualClock(T0_US + 10 * US), LOG)
    ticker.start("s1", "o1", "pro", 1024, 1, T0_US)
    ticker.start("s2", "o2", "pro", 2048, 1, T0_US)
    ticker.stop("s2", T0_US + 5 * US)
    ticker.tick()


def check(store: SqlStore, edge: FakeEdge, case: str) -> None:
    for sbx in store.running_sandboxes():
        Ticker(store, "cell-a", sbx.worker_id, ManualClock(END), LOG).stop(sbx.sandbox_id, END)
    envelopes = dict(edge.state.received)
    envelopes |= {i.id: json.loads(i.body, parse_float=Decimal) for i in store.spool_head(10_000)}
    events = store.scale_events(0, 2**62)
    assert {e.sandbox_id for e in events} == {"s1", "s2"}, case
    assert_ticks_tile(envelopes, events, case)


@pytest.fixture(scope="module")
def edge() -> Iterator[FakeEdge]:
    fake = FakeEdge(SECRET, now=lambda: TICK_AT // US)
    yield fake
    fake.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, edge: FakeEdge) -> Iterator[World]:
    """One database per store for the module: every race resets the tables it writes (``World.reset``)."""
    if request.param == "sqlite":
        path = str(tmp_path_factory.mktemp("races") / "cell.db")
        # synchronous=NORMAL: when the WAL reaches the disk, not what locks or sees what (an fsync a commit was
        # ~3 ms of wall each; durability across a power cut is tests/cellkit/adapters/test_sqlite_durability.py's).
        a, b = SqliteStore(path, durable=False), SqliteStore(path, durable=False)
        yield World(a, b, lambda _: False, edge, sqlite=True)
        a.close()
        b.close()
        return
    import psycopg

    from cellkit.adapters.postgres import PostgresStore

    dsn = pg_dsn(request.getfixturevalue("pg_server"), "races")
    a, b = PostgresStore(dsn), PostgresStore(dsn)
    monitor = psycopg.connect(dsn, autocommit=True)

    def waiting(store: SqlStore) -> bool:
        pid = store.conn.info.backend_pid  # type: ignore[attr-defined]
        row = monitor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        return row is not None and row[0] == "Lock"

    yield World(a, b, waiting, edge, sqlite=False)
    for conn in (monitor, a, b):
        conn.close()


@pytest.mark.parametrize("a_name", ACTORS)
def test_every_actor_paused_at_every_step_against_every_other(world: World, a_name: str) -> None:
    # The lifecycle time before the tick's (the tick may already have run past it: clamped) and after it.
    for life_at in (T0_US + 15 * US, T0_US + 30 * US):
        for b_name in ACTORS:
            k = 0
            while race(world, a_name, b_name, k, life_at):
                k += 1
            assert k >= 3, f"{a_name} ran through in {k} statements"
