"""A billing spool on SQLite is durable by default: synchronous=FULL, so a delivered tick never rolls back."""

from __future__ import annotations

from pathlib import Path

from cellkit.adapters.sqlite import SqliteStore
from cellkit.adapters.stores import open_store

FULL, NORMAL = 2, 1  # PRAGMA synchronous's answers


def synchronous(store: object) -> int:
    assert isinstance(store, SqliteStore)
    return int(store.conn.execute("PRAGMA synchronous").fetchone()[0])


def test_the_default_store_syncs_every_commit(tmp_path: Path) -> None:
    for store in (SqliteStore(str(tmp_path / "a.db")), open_store(f"sqlite://{tmp_path / 'b.db'}")):
        assert synchronous(store) == FULL
        assert isinstance(store, SqliteStore)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()
    relaxed = SqliteStore(str(tmp_path / "c.db"), durable=False)  # an explicit choice only
    assert synchronous(relaxed) == NORMAL
    relaxed.close()
