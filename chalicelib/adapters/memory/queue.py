"""An in-memory queue with SQS's delivery semantics where they matter to the rollup's workers.

A received message stays hidden for `visibility` seconds and comes back if it is not deleted in time
(a worker killed mid-message); a receipt is valid only for its own receive, as SQS's receipt handles
are. Standard SQS may also deliver a message twice and out of order: the simulation does that to
this queue's messages itself. tests/contract/test_task_queue.py runs the same suite on SqsQueue.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.ports import QueueConsumer


@dataclass
class _Message:
    id: int
    body: str
    visible_at: int = 0
    receives: int = 0


class MemoryQueue(QueueConsumer):
    def __init__(self, now: Callable[[], int] = lambda: 0, visibility: int = 60) -> None:
        self._now, self.visibility = now, visibility
        self._messages: dict[int, _Message] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, bodies: list[str]) -> None:
        with self._lock:
            for body in bodies:
                i = next(self._ids)
                self._messages[i] = _Message(i, body)

    def receive(self, limit: int, wait_seconds: int = 0) -> list[tuple[str, str]]:
        now = self._now()
        with self._lock:
            ready = [m for m in self._messages.values() if m.visible_at <= now][:limit]
            for m in ready:
                m.visible_at, m.receives = now + self.visibility, m.receives + 1
            return [(f"{m.id}#{m.receives}", m.body) for m in ready]

    def delete(self, receipts: list[str]) -> None:
        with self._lock:
            for receipt in receipts:
                i, receives = (int(p) for p in receipt.split("#"))
                if i in self._messages and self._messages[i].receives == receives:
                    del self._messages[i]

    def __len__(self) -> int:
        """Messages not deleted yet, visible or not."""
        with self._lock:
            return len(self._messages)
