"""PostgreSQL: the seed cells' own database. Same tables and statements as SQLite (see sql.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from cellkit.adapters.sql import SqlStore


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresStore(SqlStore):
    serial = "BIGSERIAL"
    # READ COMMITTED: a plain SELECT would let a tick commit between a lifecycle call's read and its write.
    lock_row = " FOR UPDATE"
    conn: psycopg.Connection[tuple[Any, ...]]

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.create_tables()

    def _raw_exec(self, sql: str, params: Sequence[Any]) -> int:
        with self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return cur.rowcount

    def _raw_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_pg(sql), [tuple(r) for r in rows])

    def _raw_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return list(cur.fetchall())
