"""Cell-kit fixtures: stores of every kind (PostgreSQL a real server the suite starts), a fake edge, logs."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.memory import MemoryStore
from cellkit.adapters.sqlite import SqliteStore
from cellkit.ports import CellStore
from tests.cellkit.fake_edge import FakeEdge

SECRET = "cell-test-event-secret"
JWT_SECRET = "cell-test-jwt-secret-of-32-bytes-or-more"
# 2026-11-25T00:00:00Z, a bucket boundary.
T0 = 1795564800
T0_US = T0 * 1_000_000
PG_DATABASE = "cells"  # the session's database on pg_server; every test has a schema of its own in it


@contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """Exclusive among this run's workers (flock: released by the kernel if a worker dies holding it)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def xdg_runtime_dir() -> None:
    """platformdirs (imported by pgserver) warns when XDG_RUNTIME_DIR is unset (root without a login session).
    One directory for every run, not one per worker and run left behind in the temp dir."""
    path = Path(tempfile.gettempdir()) / "cellkit-xdg"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(path))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL 16 from the pgserver wheel (works as root too), one for the whole run: xdist's workers
    share it (pgserver counts their handles; the last one to leave stops it), where each started its own
    (initdb and start: ~0.5 CPU-s and 1-4 s each). Every test has a schema of its own (``pg_dsn``).

    A scratch server: no fsync, no full-page writes, commits not waiting for the WAL's flush. They decide what
    survives a crash of the machine, which no test here makes (test_pg_restart runs its own server); without
    them the stop's checkpoint took seconds and every commit waited for the disk."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    root = Path(tempfile.gettempdir()) / f"cellkit-pg-{run[:16]}"
    lock = root.with_name("cellkit-pg.lock")  # one file for every run (a lock per run would pile up in /tmp)
    xdg_runtime_dir()
    import pgserver
    import psycopg

    # Under one lock, start or join, and leave or stop: a worker that starts late never finds a half-removed
    # data directory of a worker that finished early.
    with _run_lock(lock):
        root.mkdir(exist_ok=True)
        server = pgserver.get_server(root, cleanup_mode="stop")
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            for setting in ("fsync", "full_page_writes", "synchronous_commit"):
                admin.execute(f"ALTER SYSTEM SET {setting} = off")
            admin.execute("SELECT pg_reload_conf()")
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone() is None:
                admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    yield server
    with _run_lock(lock):
        server.cleanup()  # stops the server only if no other worker still holds it
        if not (root / "postmaster.pid").exists():
            shutil.rmtree(root, ignore_errors=True)


def pg_dsn(pg_server: Any, prefix: str = "cell") -> str:
    """A fresh, empty schema of its own (a database's worth of tables for one test): its DSN.

    One schema per test in one database: a database per test copied the template's ~300 files each time."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.get_uri(database=PG_DATABASE)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    return f"{dsn}&options=-c%20search_path%3D{schema}"


@pytest.fixture
def pg_store(pg_server: Any) -> Iterator[CellStore]:
    from cellkit.adapters.postgres import PostgresStore

    store = PostgresStore(pg_dsn(pg_server))
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[CellStore]:
    """The contract suite's parameter: every store must give the same answers."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "cell.db"))
        yield store
        store.close()
    else:
        yield request.getfixturevalue("pg_store")


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "cell.db"))
    yield store
    store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0_US)


@pytest.fixture
def edge(clock: ManualClock) -> Iterator[FakeEdge]:
    fake = FakeEdge(SECRET, now=lambda: clock.now_us() // 1_000_000)
    yield fake
    fake.stop()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == name]


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, Captured]]:
    logger = logging.getLogger(f"cellkit.test.{uuid.uuid4().hex[:8]}")
    captured = Captured()
    logger.addHandler(captured)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, captured
    logger.removeHandler(captured)
