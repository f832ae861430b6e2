"""In-memory Archive: raw batches kept in a dict under the same keys S3Archive writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from chalicelib.adapters.s3_archive import batch_key


class MemoryArchive:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_batch(self, cell_id: str, received_at: int, body: bytes) -> str | None:
        key = batch_key(cell_id, received_at, body)
        with self._lock:
            self.objects[key] = body
        return key

    def batches(self, cell_id: str | None, day: str) -> Iterator[tuple[str, bytes]]:
        # S3Archive lists by prefix: raw/<cell>/<day>/ for one cell, every cell's <day> otherwise.
        with self._lock:
            found = sorted(self.objects.items())
        for key, body in found:
            _, cell, key_day, _ = key.split("/", 3)
            if key_day == day and (not cell_id or cell == cell_id):
                yield key, body
