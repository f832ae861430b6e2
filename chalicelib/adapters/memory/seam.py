"""In-memory SeamReader: the seam's reads (outbox rows by bucket, which cells an org's samples came from, the
oldest pending row) over a MemoryStore's tables, answering as DynamoSeam does (the contract suite runs both)."""

from __future__ import annotations

from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.outbox import OutboxRow
from chalicelib.ports import SeamReader


class MemorySeam(SeamReader):
    def __init__(self, store: MemoryStore) -> None:
        self.tables = store.tables

    def bucket_rows(self, bucket_starts: list[int]) -> list[OutboxRow]:
        wanted = set(bucket_starts)
        with self.tables.lock:
            rows = [r for r in self.tables.outbox.values() if r.bucket_start in wanted]
        return sorted(rows, key=lambda r: (r.bucket_start, r.id))

    def org_cells(self, bucket_start: int, org_ids: set[str]) -> dict[tuple[str, int], frozenset[str]]:
        found: dict[str, set[str]] = {}
        with self.tables.lock:
            for sample in self.tables.samples.get(bucket_start, {}).values():
                if sample.org_id in org_ids:
                    found.setdefault(sample.org_id, set()).add(sample.cell_id)
        return {(org, bucket_start): frozenset(cells) for org, cells in found.items()}

    def oldest_pending_bucket_end(self) -> int | None:
        with self.tables.lock:
            pending = [r for r in self.tables.outbox.values() if r.queue == "pending"]
        return min(pending, key=lambda r: (r.bucket_start, r.id)).bucket_end if pending else None
