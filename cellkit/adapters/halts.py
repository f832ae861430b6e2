"""HaltStore adapters: the `org_halts` table beside the cell's own (SQLite, PostgreSQL) and in memory.

They join the store's open transaction (SqlStore and MemoryStore nest transactions), so a create's
halt check, its lock and its sandbox insert commit together.
"""

from __future__ import annotations

import threading

from cellkit.adapters.memory import MemoryStore
from cellkit.adapters.sql import _SANDBOX_COLS, SqlStore, _sandbox
from cellkit.core.ticker import Sandbox
from cellkit.ports import HaltStore

TABLE = """CREATE TABLE IF NOT EXISTS org_halts (
    org_id TEXT PRIMARY KEY, halted INTEGER NOT NULL, halted_at_us BIGINT NOT NULL, reason TEXT NOT NULL)"""


class SqlHalts(HaltStore):
    def __init__(self, store: SqlStore) -> None:
        self.s = store
        with store.transaction():
            store._raw_exec(TABLE, ())

    def org_halted_locked(self, org_id: str) -> bool:
        with self.s.transaction():
            # The row must exist to be locked (PostgreSQL's FOR UPDATE); SQLite's BEGIN IMMEDIATE already
            # holds the database's write lock.
            self.s._raw_exec("INSERT INTO org_halts (org_id, halted, halted_at_us, reason) VALUES (?, 0, 0, '') "
                             "ON CONFLICT (org_id) DO NOTHING", (org_id,))
            rows = self.s._raw_query(f"SELECT halted FROM org_halts WHERE org_id = ?{self.s.lock_row}", (org_id,))
            return bool(rows[0][0])

    def set_org_halt(self, org_id: str, halted: bool, at_us: int, reason: str) -> bool:
        with self.s.transaction():
            if self.org_halted_locked(org_id) == halted:
                return False
            self.s._raw_exec("UPDATE org_halts SET halted = ?, halted_at_us = ?, reason = ? WHERE org_id = ?",
                             (int(halted), at_us, reason, org_id))
            return True

    def halted_orgs(self) -> dict[str, tuple[int, str]]:
        rows = self.s._query("SELECT org_id, halted_at_us, reason FROM org_halts WHERE halted = 1 ORDER BY org_id")
        return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}

    def org_sandboxes(self, org_id: str | None, status: str) -> list[Sandbox]:
        sql, params = f"SELECT {_SANDBOX_COLS} FROM sandboxes WHERE status = ?", [status]
        if org_id is not None:
            sql, params = sql + " AND org_id = ?", [status, org_id]
        return [_sandbox(r) for r in self.s._query(sql + " ORDER BY sandbox_id", params)]


class MemoryHalts(HaltStore):
    """In memory, under the MemoryStore's lock (its transactions are serial)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.rows: dict[str, tuple[bool, int, str]] = {}
        self._lock = threading.RLock()

    def org_halted_locked(self, org_id: str) -> bool:
        with self.store.transaction():
            return self.rows.get(org_id, (False, 0, ""))[0]

    def set_org_halt(self, org_id: str, halted: bool, at_us: int, reason: str) -> bool:
        with self.store.transaction():
            if self.org_halted_locked(org_id) == halted:
                return False
            self.rows[org_id] = (halted, at_us, reason)
            return True

    def halted_orgs(self) -> dict[str, tuple[int, str]]:
        with self.store.transaction():
            return {o: (at, why) for o, (h, at, why) in sorted(self.rows.items()) if h}

    def org_sandboxes(self, org_id: str | None, status: str) -> list[Sandbox]:
        with self.store.transaction():
            found = [s for s in self.store.st.sandboxes.values()
                     if s.status == status and (org_id is None or s.org_id == org_id)]
        return sorted(found, key=lambda s: s.sandbox_id)


def halts_for(store: object) -> HaltStore:
    """The HaltStore that fits a CellStore (the same database, the same transactions)."""
    if isinstance(store, SqlStore):
        return SqlHalts(store)
    if isinstance(store, MemoryStore):
        return MemoryHalts(store)
    raise TypeError(f"no HaltStore for {type(store).__name__}")
