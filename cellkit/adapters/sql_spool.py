"""The spool, its side table and the forwarder's lease in SQL: SqlStore's share of CellStore for the forwarder
(same statement texts for SQLite and PostgreSQL, see sql.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from cellkit.ports import AsideItem, SpoolItem, Tx


class SpoolSql(ABC):
    """Mixed into SqlStore, which provides the plumbing declared here."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def _raw_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _count(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    # --- spool ---
    def spool_put(self, items: Sequence[SpoolItem]) -> None:
        with self.transaction() as tx:
            tx.spool_put(items)

    def spool_head(self, limit: int) -> list[SpoolItem]:
        rows = self._query("SELECT id, body FROM spool ORDER BY seq LIMIT ?", (limit,))
        return [SpoolItem(str(r[0]), str(r[1])) for r in rows]

    def spool_delete(self, ids: Sequence[str]) -> None:
        self._many("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def spool_set_aside(self, ids: Sequence[str], reason: str, at: int) -> None:
        # Copy then delete in one transaction: an envelope is always in exactly one of the two tables.
        with self.transaction():
            self._raw_many(
                "INSERT INTO spool_aside (id, body, reason, at) SELECT id, body, ?, ? FROM spool WHERE id = ? "
                "ON CONFLICT (id) DO NOTHING",
                [(reason, at, i) for i in ids],
            )
            self._raw_many("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def spool_depth(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM spool")[0][0])

    def aside(self) -> list[AsideItem]:
        rows = self._query("SELECT id, body, reason, at FROM spool_aside ORDER BY at, id")
        return [AsideItem(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def aside_replay(self, ids: Sequence[str]) -> int:
        # Copy then delete in one transaction, as spool_set_aside: never in both tables, never in neither.
        with self.transaction():
            moved = self._count_ids("spool_aside", ids)
            self._raw_many("INSERT INTO spool (id, body) SELECT id, body FROM spool_aside WHERE id = ? "
                           "ON CONFLICT (id) DO NOTHING", [(i,) for i in ids])
            self._raw_many("DELETE FROM spool_aside WHERE id = ?", [(i,) for i in ids])
        return moved

    def aside_discard(self, ids: Sequence[str]) -> int:
        with self.transaction():
            gone = self._count_ids("spool_aside", ids)
            self._raw_many("DELETE FROM spool_aside WHERE id = ?", [(i,) for i in ids])
        return gone

    def _count_ids(self, table: str, ids: Sequence[str]) -> int:
        return sum(self._count(f"SELECT COUNT(*) FROM {table} WHERE id = ?", (i,)) for i in set(ids))

    def lease_acquire(self, name: str, holder: str, now_us: int, ttl_us: int, from_holder: str | None = None) -> bool:
        # One statement: PostgreSQL locks the conflicting row and re-checks the WHERE on its latest version
        # (READ COMMITTED), SQLite's BEGIN IMMEDIATE serialises writers, so two takers never both win.
        return self._exec(
            "INSERT INTO leases (name, holder, until_us) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, until_us = excluded.until_us "
            "WHERE leases.holder = excluded.holder OR leases.until_us <= ? OR leases.holder = ?",
            (name, holder, now_us + ttl_us, now_us, from_holder or holder),
        ) == 1

    def lease_holder(self, name: str) -> str | None:
        rows = self._query("SELECT holder FROM leases WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def lease_release(self, name: str, holder: str) -> None:
        self._exec("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

