"""Open the store a URL names: ``sqlite:///path`` (default), ``postgresql://...``, ``memory://``."""

from __future__ import annotations

from cellkit.ports import CellStore


def open_store(url: str) -> CellStore:
    if url.startswith(("postgresql://", "postgres://")):
        from cellkit.adapters.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("memory://"):
        from cellkit.adapters.memory import MemoryStore

        return MemoryStore()
    from cellkit.adapters.sqlite import SqliteStore

    # sqlite:///abs/path and sqlite://rel/path; a bare path works too.
    return SqliteStore(url.removeprefix("sqlite://"))
