"""The task queues on SQS: the rollup's (a standard queue: at-least-once, any order; the workers are
idempotent) and the send's (FIFO: `send_grouped`, a message group per customer, a dedup id per task)."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.send_tasks import GroupedMessage
from chalicelib.ports import GroupedQueue, QueueConsumer, StoreUnavailable

_BATCH = 10  # SendMessageBatch and DeleteMessageBatch take at most 10 entries
_LANES = 8


class SqsQueue(QueueConsumer, GroupedQueue):
    def __init__(self, client: Any, queue_url: str) -> None:
        self.client, self.url = client, queue_url

    def send(self, bodies: list[str]) -> None:
        for i in range(0, len(bodies), _BATCH):
            entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[i : i + _BATCH])]
            out = self._call(self.client.send_message_batch, QueueUrl=self.url, Entries=entries)
            if out.get("Failed"):
                # Unsent tasks are no loss (the coordinator re-enqueues a bucket not rolled), but say so now.
                raise StoreUnavailable(f"SQS refused {len(out['Failed'])} of {len(entries)} tasks")

    def send_grouped(self, messages: list[GroupedMessage]) -> None:
        # A big fleet's run offers hundreds of thousands of tasks: _LANES senders at once, each group in one
        # lane, so a group's messages still reach the queue in order.
        lanes: list[list[GroupedMessage]] = [[] for _ in range(_LANES)]
        for m in messages:
            lanes[zlib.crc32(m.group.encode()) % _LANES].append(m)
        busy = [lane for lane in lanes if lane]
        if len(busy) <= 1 or len(messages) <= _BATCH:
            for lane in busy:
                self._send_lane(lane)
            return
        with ThreadPoolExecutor(max_workers=len(busy)) as pool:
            list(pool.map(self._send_lane, busy))

    def _send_lane(self, messages: list[GroupedMessage]) -> None:
        for i in range(0, len(messages), _BATCH):
            entries = [{"Id": str(n), "MessageBody": m.body, "MessageGroupId": m.group,
                        "MessageDeduplicationId": m.dedup_id} for n, m in enumerate(messages[i : i + _BATCH])]
            out = self._call(self.client.send_message_batch, QueueUrl=self.url, Entries=entries)
            if out.get("Failed"):
                # The rows stay pending: the coordinator's next run offers them again.
                raise StoreUnavailable(f"SQS refused {len(out['Failed'])} of {len(entries)} send tasks")

    def receive(self, limit: int, wait_seconds: int = 0) -> list[tuple[str, str]]:
        out = self._call(self.client.receive_message, QueueUrl=self.url, MaxNumberOfMessages=min(limit, _BATCH),
                         WaitTimeSeconds=wait_seconds)
        return [(m["ReceiptHandle"], m["Body"]) for m in out.get("Messages", [])]

    def delete(self, receipts: list[str]) -> None:
        for i in range(0, len(receipts), _BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts[i : i + _BATCH])]
            self._call(self.client.delete_message_batch, QueueUrl=self.url, Entries=entries)

    @staticmethod
    def _call(operation: Any, **request: Any) -> dict[str, Any]:
        try:
            out: dict[str, Any] = operation(**request)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"SQS: {exc}"[:300]) from exc
        return out
