"""The PostgreSQL store reconnects by itself, with backoff, after its connection is lost (a real server)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.postgres import PostgresStore
from cellkit.ports import SpoolItem, StoreUnavailable
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import T0_US, pg_dsn

US = 1_000_000


@pytest.fixture
def dsn(pg_server: Any) -> str:
    return pg_dsn(pg_server, "reconnect")


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def cut(admin: psycopg.Connection[Any], store: PostgresStore) -> None:
    """What a server restart does to the store's connection: the server ends it."""
    admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lost_connection_is_reopened_and_nothing_is_lost(
    dsn: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(dsn)
    clock = ManualClock(T0_US)
    ticker = Ticker(store, "cell-a", "w1", clock, logging.getLogger("cellkit.test.reconnect"))
    ticker.start("s1", "o1", "pro", 1024, 1)
    cut(admin, store)
    clock.advance_us(20 * US)
    # Lost between transactions: the next one reconnects before its first statement and goes on.
    with caplog.at_level(logging.INFO, logger="cellkit.store"):
        assert ticker.tick().ticked == 1
    assert store.reconnects == 1 and [r.getMessage() for r in caplog.records] == ["store_reconnected"]
    # Lost in the middle of one: it fails as StoreUnavailable, rolled back whole; the next call reconnects.
    with pytest.raises(StoreUnavailable), store.transaction() as tx:
        tx.spool_put([SpoolItem("half", "{}")])
        cut(admin, store)
        tx.spool_put([SpoolItem("other-half", "{}")])
    clock.advance_us(20 * US)
    assert ticker.tick().ticked == 1
    assert [i.id for i in store.spool_head(10)] == [f"cell-a:s1:{T0_US + 20 * US}", f"cell-a:s1:{T0_US + 40 * US}"]
    assert store.reconnects == 2
    store.close()


def test_while_the_server_is_down_reconnects_back_off(dsn: str, admin: psycopg.Connection[Any]) -> None:
    clock = Clock()
    store = PostgresStore(dsn, monotonic=clock, draw=lambda: 0.0)
    attempts: list[float] = []
    real_connect = store._connect

    def connect() -> psycopg.Connection[tuple[Any, ...]]:
        attempts.append(clock.now)
        if clock.now < 110:  # the server is down until t=110
            raise psycopg.OperationalError("connection refused")
        return real_connect()

    store._connect = connect  # type: ignore[method-assign]
    cut(admin, store)
    for _ in range(80):  # a call every 0.25 s for 20 s: reconnect attempts back off, calls between fail at once
        try:
            store.spool_depth()
            break
        except StoreUnavailable:
            clock.now += 0.25
    # Equal jitter with a zero draw: waits of 0.25, 0.5, 1, 2, 4, 8 s (half of 0.5 * 2^n) between attempts.
    assert attempts == [100.0, 100.25, 100.75, 101.75, 103.75, 107.75, 115.75]
    assert store.spool_depth() == 0 and store.failures == 0 and store.reconnects == 1
    store.close()
