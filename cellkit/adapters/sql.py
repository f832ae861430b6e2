"""The cell's tables in SQL, shared by the SQLite and PostgreSQL adapters.

One statement text serves both: ``?`` placeholders (rewritten to ``%s`` for
psycopg), ``ON CONFLICT`` upserts (SQLite >= 3.24 and PostgreSQL), times as
BIGINT microseconds and meter values as decimal TEXT, so both engines return
identical values (SQLite would turn NUMERIC into a float).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

from cellkit.adapters.sql_spool import SpoolSql
from cellkit.core.ticker import Sandbox
from cellkit.core.usage import OrgRow, ScaleEvent, UsageRow
from cellkit.ports import Billable, BillableState, SpoolItem

TABLES = """
CREATE TABLE IF NOT EXISTS spool (
    seq {serial} PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spool_aside (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, reason TEXT NOT NULL, at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sandboxes (
    sandbox_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, plan TEXT NOT NULL, worker_id TEXT NOT NULL,
    memory_mb INTEGER NOT NULL, cpu_count INTEGER NOT NULL, started_us BIGINT NOT NULL,
    last_tick_us BIGINT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_scale_events (
    id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL, org_id TEXT NOT NULL, memory_mb INTEGER NOT NULL,
    cpu_count INTEGER NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT);
CREATE INDEX IF NOT EXISTS scale_events_by_start ON sandbox_scale_events (started_at);
CREATE INDEX IF NOT EXISTS scale_events_by_sandbox ON sandbox_scale_events (sandbox_id);
CREATE TABLE IF NOT EXISTS orgs (
    org_id TEXT PRIMARY KEY, plan TEXT NOT NULL, billing_mode TEXT NOT NULL, stripe_customer_id TEXT,
    max_memory_mb INTEGER);
CREATE TABLE IF NOT EXISTS usage_hours (
    org_id TEXT NOT NULL, bucket_start BIGINT NOT NULL, meter TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (org_id, bucket_start, meter));
CREATE TABLE IF NOT EXISTS billable_events (
    identifier TEXT PRIMARY KEY, org_id TEXT NOT NULL, bucket_start BIGINT NOT NULL, meter TEXT NOT NULL,
    value TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS billable_by_state ON billable_events (state, bucket_start);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_us BIGINT NOT NULL);
"""

_SANDBOX_COLS = "sandbox_id, org_id, plan, worker_id, memory_mb, cpu_count, started_us, last_tick_us, status"
_SANDBOX_SET = ", ".join(f"{c} = ?" for c in _SANDBOX_COLS.split(", ")[1:])
_SANDBOX_WHERE = " AND ".join(f"{c} = ?" for c in _SANDBOX_COLS.split(", "))
_EVENT_COLS = "id, sandbox_id, org_id, memory_mb, cpu_count, started_at, ended_at"


def _sandbox_values(s: Sandbox) -> tuple[Any, ...]:
    return (s.sandbox_id, s.org_id, s.plan, s.worker_id, s.memory_mb, s.cpu_count, s.started_us, s.last_tick_us,
            s.status)


def _sandbox(row: Sequence[Any]) -> Sandbox:
    return Sandbox(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]), int(row[6]),
                   int(row[7]), row[8])


def _event(row: Sequence[Any]) -> ScaleEvent:
    return ScaleEvent(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]), int(row[5]),
                      None if row[6] is None else int(row[6]))


class SqlTx:
    """Statements inside one open transaction of a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self.s = store

    def spool_put(self, items: Sequence[SpoolItem]) -> None:
        self.s._many("INSERT INTO spool (id, body) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                     [(i.id, i.body) for i in items])

    def sandbox_for_update(self, sandbox_id: str) -> Sandbox | None:
        rows = self.s._query(f"SELECT {_SANDBOX_COLS} FROM sandboxes WHERE sandbox_id = ?{self.s.lock_row}",
                             (sandbox_id,))
        return _sandbox(rows[0]) if rows else None

    def insert_sandbox(self, sandbox: Sandbox) -> bool:
        return self.s._exec(
            f"INSERT INTO sandboxes ({_SANDBOX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sandbox_id) DO NOTHING", _sandbox_values(sandbox)) == 1

    def change_sandbox(self, expected: Sandbox, new: Sandbox) -> bool:
        if new.sandbox_id != expected.sandbox_id:
            raise ValueError(f"a change cannot rename sandbox {expected.sandbox_id} to {new.sandbox_id}")
        count = self.s._exec(f"UPDATE sandboxes SET {_SANDBOX_SET} WHERE {_SANDBOX_WHERE}",
                             _sandbox_values(new)[1:] + _sandbox_values(expected))
        return count == 1

    def open_scale_event(self, event: ScaleEvent) -> bool:
        return self.s._exec(
            f"INSERT INTO sandbox_scale_events ({_EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (event.event_id, event.sandbox_id, event.org_id, event.memory_mb, event.cpu_count, event.started_us,
             event.ended_us),
        ) == 1

    def close_scale_events(self, sandbox_id: str, ended_us: int) -> None:
        self.s._exec("DELETE FROM sandbox_scale_events WHERE sandbox_id = ? AND ended_at IS NULL AND started_at >= ?",
                     (sandbox_id, ended_us))
        self.s._exec("UPDATE sandbox_scale_events SET ended_at = ? WHERE sandbox_id = ? AND ended_at IS NULL",
                     (ended_us, sandbox_id))


class Connection(Protocol):
    """What the shared transaction plumbing needs of a driver's connection: sqlite3's and psycopg's both fit."""

    def execute(self, sql: str, /) -> object: ...

    def close(self) -> None: ...


class SqlStore(SpoolSql, ABC):
    """CellStore over a DB-API connection; one lock serialises the ticker and forwarder threads."""

    serial = "INTEGER"
    begin = "BEGIN"
    lock_row = ""  # appended to the SELECT of a row a transaction is about to change
    conn: Connection

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._in_tx = False

    # --- what a dialect provides ---
    @abstractmethod
    def _raw_exec(self, sql: str, params: Sequence[Any]) -> int: ...

    @abstractmethod
    def _raw_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _raw_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    # Transactions are opened and closed by statement, not by the driver's own transaction API: the
    # connections run in autocommit mode, so a transaction spans exactly one `transaction()` block.
    def _begin(self) -> None:
        self.conn.execute(self.begin)

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()

    def create_tables(self) -> None:
        with self.transaction():
            for stmt in TABLES.format(serial=self.serial).split(";"):
                if stmt.strip():
                    self._raw_exec(stmt, ())

    # --- plumbing: every statement runs inside a transaction (its own, or the caller's) ---
    @contextmanager
    def transaction(self) -> Iterator[SqlTx]:
        with self._lock:
            if self._in_tx:
                yield SqlTx(self)
                return
            self._begin()
            self._in_tx = True
            try:
                yield SqlTx(self)
            except BaseException:
                self._in_tx = False
                self._rollback()
                raise
            self._in_tx = False
            self._commit()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction():
            return self._raw_exec(sql, params)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.transaction():
                self._raw_many(sql, rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction():
            return self._raw_query(sql, params)

    # --- sandboxes and scale events ---
    def sandbox(self, sandbox_id: str) -> Sandbox | None:
        rows = self._query(f"SELECT {_SANDBOX_COLS} FROM sandboxes WHERE sandbox_id = ?", (sandbox_id,))
        return _sandbox(rows[0]) if rows else None

    def running_sandboxes(self, worker_id: str | None = None) -> list[Sandbox]:
        sql = f"SELECT {_SANDBOX_COLS} FROM sandboxes WHERE status = 'running'"
        params: tuple[Any, ...] = ()
        if worker_id is not None:
            sql, params = sql + " AND worker_id = ?", (worker_id,)
        return [_sandbox(r) for r in self._query(sql + " ORDER BY sandbox_id", params)]

    def scale_events(self, from_us: int, to_us: int) -> list[ScaleEvent]:
        rows = self._query(
            f"SELECT {_EVENT_COLS} FROM sandbox_scale_events WHERE started_at < ? "
            "AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at, id",
            (to_us, from_us),
        )
        return [_event(r) for r in rows]

    def first_scale_event_us(self) -> int | None:
        value = self._query("SELECT MIN(started_at) FROM sandbox_scale_events")[0][0]
        return None if value is None else int(value)

    # --- orgs ---
    def put_org(self, org: OrgRow) -> None:
        self._exec(
            "INSERT INTO orgs (org_id, plan, billing_mode, stripe_customer_id, max_memory_mb) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (org_id) DO UPDATE SET plan = excluded.plan, billing_mode = excluded.billing_mode, "
            "stripe_customer_id = excluded.stripe_customer_id, max_memory_mb = excluded.max_memory_mb",
            (org.org_id, org.plan, org.billing_mode, org.stripe_customer_id, org.max_memory_mb),
        )

    def orgs(self, org_ids: Sequence[str] | None = None) -> dict[str, OrgRow]:
        rows = self._query("SELECT org_id, plan, billing_mode, stripe_customer_id, max_memory_mb FROM orgs")
        wanted = None if org_ids is None else set(org_ids)
        return {
            str(r[0]): OrgRow(str(r[0]), str(r[1]), r[2], r[3], None if r[4] is None else int(r[4]))
            for r in rows
            if wanted is None or r[0] in wanted
        }

    # --- the cell's own billing ---
    def put_usage(self, rows: Sequence[UsageRow]) -> None:
        self._many(
            "INSERT INTO usage_hours (org_id, bucket_start, meter, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (org_id, bucket_start, meter) DO UPDATE SET value = excluded.value",
            [(r.org_id, r.bucket_start, r.meter, str(r.value)) for r in rows],
        )

    def usage(self, from_bucket: int, to_bucket: int) -> list[UsageRow]:
        rows = self._query(
            "SELECT org_id, bucket_start, meter, value FROM usage_hours WHERE bucket_start >= ? AND bucket_start < ? "
            "ORDER BY bucket_start, org_id, meter",
            (from_bucket, to_bucket),
        )
        return [UsageRow(str(r[0]), int(r[1]), str(r[2]), Decimal(r[3])) for r in rows]

    def put_billable(self, rows: Sequence[Billable]) -> int:
        before = self._count("SELECT COUNT(*) FROM billable_events")
        self._many(
            "INSERT INTO billable_events (identifier, org_id, bucket_start, meter, value, state, detail, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (identifier) DO NOTHING",
            [(b.identifier, b.org_id, b.bucket_start, b.meter, str(b.value), b.state, b.detail) for b in rows],
        )
        return self._count("SELECT COUNT(*) FROM billable_events") - before

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._query(sql, params)[0][0])

    def billable(self, state: BillableState, limit: int) -> list[Billable]:
        rows = self._query(
            "SELECT identifier, org_id, bucket_start, meter, value, state, detail FROM billable_events "
            "WHERE state = ? ORDER BY bucket_start, identifier LIMIT ?",
            (state, limit),
        )
        return [Billable(str(r[0]), str(r[1]), int(r[2]), str(r[3]), Decimal(r[4]), r[5], str(r[6])) for r in rows]

    def mark_billable(self, identifier: str, state: BillableState, detail: str, at: int) -> None:
        self._exec("UPDATE billable_events SET state = ?, detail = ?, updated_at = ? WHERE identifier = ?",
                   (state, detail, at, identifier))

    def transition_billable(self, identifier: str, from_state: BillableState, to_state: BillableState, detail: str,
                            at: int) -> bool:
        return self._exec("UPDATE billable_events SET state = ?, detail = ?, updated_at = ? WHERE identifier = ? "
                          "AND state = ?", (to_state, detail, at, identifier, from_state)) == 1

    def count_billable(self, state: BillableState) -> int:
        return self._count("SELECT COUNT(*) FROM billable_events WHERE state = ?", (state,))

    def cursor(self, name: str) -> int | None:
        rows = self._query("SELECT value FROM cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_cursor(self, name: str, value: int) -> None:
        self._exec("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = "
                   "excluded.value", (name, value))
