"""SQLite: the embedded default (nothing to install), in WAL mode.

A billing spool is durable by default: ``synchronous=FULL`` syncs the WAL at
every commit, so a tick the forwarder has delivered can never roll back with
its cursor on power loss (re-planned, it would get a new end and a new id and
be billed twice). ``durable=False`` (``synchronous=NORMAL``) keeps every commit
through a process crash (SIGKILL) but not through an OS crash or power cut; it
saves an fsync per commit (bench/cellspool measures both).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from cellkit.adapters.sql import SqlStore


class SqliteStore(SqlStore):
    serial = "INTEGER"
    # IMMEDIATE takes the write lock up front: two processes never deadlock upgrading a read lock.
    begin = "BEGIN IMMEDIATE"
    conn: sqlite3.Connection

    def __init__(self, path: str, durable: bool = True) -> None:
        super().__init__()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction spans exactly our block.
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.create_tables()

    def _raw_exec(self, sql: str, params: Sequence[Any]) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def _raw_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, [tuple(r) for r in rows])

    def _raw_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())
