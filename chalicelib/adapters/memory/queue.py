"""An in-memory queue with SQS's delivery semantics where they matter to the workers.

A received message stays hidden for `visibility` seconds and comes back if it is not deleted in time
(a worker killed mid-message); a receipt is valid only for its own receive, as SQS's receipt handles
are. Standard SQS may also deliver a message twice and out of order: the simulation does that to
this queue's messages itself. As a FIFO queue (`send_grouped`), a group's messages come out in order,
none while another of the same group is received and not yet deleted or timed out, and a dedup id
seen in the last 5 minutes is dropped, as SQS FIFO does. tests/contract/test_task_queue.py runs the
same suite on SqsQueue (moto).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.core.send_tasks import GroupedMessage
from chalicelib.ports import GroupedQueue, QueueConsumer

DEDUP_WINDOW = 300  # SQS FIFO's deduplication interval, seconds


@dataclass
class _Message:
    id: int
    body: str
    visible_at: int = 0
    receives: int = 0
    group: str | None = None


class MemoryQueue(QueueConsumer, GroupedQueue):
    def __init__(self, now: Callable[[], int] = lambda: 0, visibility: int = 60) -> None:
        self._now, self.visibility = now, visibility
        self._messages: dict[int, _Message] = {}
        self._dedup: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, bodies: list[str]) -> None:
        with self._lock:
            for body in bodies:
                i = next(self._ids)
                self._messages[i] = _Message(i, body)

    def send_grouped(self, messages: list[GroupedMessage]) -> None:
        now = self._now()
        with self._lock:
            for m in messages:
                seen = self._dedup.get(m.dedup_id)
                if seen is not None and now - seen < DEDUP_WINDOW:
                    continue
                self._dedup[m.dedup_id] = now
                i = next(self._ids)
                self._messages[i] = _Message(i, m.body, group=m.group)

    def receive(self, limit: int, wait_seconds: int = 0) -> list[tuple[str, str]]:
        now = self._now()
        with self._lock:
            # A group with a message in flight (received, hidden) gives nothing until it is deleted or shows again.
            busy = {m.group for m in self._messages.values() if m.group is not None and m.visible_at > now}
            ready: list[_Message] = []
            for m in sorted(self._messages.values(), key=lambda m: m.id):
                if len(ready) >= limit:
                    break
                if m.visible_at > now or m.group in busy:
                    continue
                # Within one receive SQS may hand several messages of a group, in order (one batch, one worker).
                ready.append(m)
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
