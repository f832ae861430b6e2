"""PostgreSQL: the seed cells' own database. Same tables and statements as SQLite (see sql.py).

A cell's PostgreSQL restarts (upgrades, fail-overs) while the cell runs. The
store then reconnects by itself: a transaction that finds its connection dead
before its first statement reconnects and goes on; one that loses it midway
fails with ``StoreUnavailable`` (the server rolled it back) and the next one
reconnects. While the server stays down, reconnects are spaced by capped
exponential backoff (``cellkit.core.backoff``), and calls in between fail at
once rather than each waiting for a connect timeout.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from cellkit.adapters.sql import SqlStore
from cellkit.core.backoff import delay
from cellkit.ports import StoreUnavailable

CONNECT_TIMEOUT_S = 5
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.5, 30.0


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


@contextmanager
def _unavailable() -> Iterator[None]:
    """A lost connection (OperationalError: the server shut down, the socket reset) is StoreUnavailable."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL: {exc}") from exc


class PostgresStore(SqlStore):
    serial = "BIGSERIAL"
    # READ COMMITTED: a plain SELECT would let a tick commit between a lifecycle call's read and its write.
    lock_row = " FOR UPDATE"
    conn: psycopg.Connection[tuple[Any, ...]]

    def __init__(self, dsn: str, log: logging.Logger | None = None, monotonic: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        super().__init__()
        self.dsn, self.log, self.monotonic, self.draw = dsn, log or logging.getLogger("cellkit.store"), monotonic, draw
        self.failures = 0  # reconnects failed in a row
        self.retry_at = 0.0
        self.reconnects = 0
        self.conn = self._connect()
        self.create_tables()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def _reconnect(self) -> None:
        now = self.monotonic()
        if now < self.retry_at:
            raise StoreUnavailable(f"PostgreSQL unreachable; next reconnect in {self.retry_at - now:.1f} s")
        try:
            conn = self._connect()
        except psycopg.OperationalError as exc:
            wait = delay(self.failures, self.draw(), BACKOFF_BASE_S, BACKOFF_CAP_S)
            self.failures += 1
            self.retry_at = now + wait
            self.log.warning("store_reconnect_failed", extra={"attempt": self.failures, "retry_in_s": round(wait, 3),
                                                              "error": str(exc)[:300]})
            raise StoreUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        self.conn, self.failures, self.retry_at = conn, 0, 0.0
        self.reconnects += 1
        self.log.info("store_reconnected", extra={"reconnects": self.reconnects})

    def _begin(self) -> None:
        if self.conn.closed:
            self._reconnect()
        try:
            self.conn.execute(self.begin)
        except psycopg.OperationalError:
            if not self.conn.closed:
                raise
            # The server went away since this connection's last statement; nothing of this transaction ran yet.
            self._reconnect()
            with _unavailable():
                self.conn.execute(self.begin)

    def _commit(self) -> None:
        with _unavailable():
            self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        # A lost connection has rolled the transaction back already; its error, not this one, is the news.
        with suppress(psycopg.OperationalError):
            if not self.conn.closed:
                self.conn.execute("ROLLBACK")

    def _raw_exec(self, sql: str, params: Sequence[Any]) -> int:
        with _unavailable(), self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return cur.rowcount

    def _raw_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _unavailable(), self.conn.cursor() as cur:
            cur.executemany(_pg(sql), [tuple(r) for r in rows])

    def _raw_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with _unavailable(), self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return list(cur.fetchall())
