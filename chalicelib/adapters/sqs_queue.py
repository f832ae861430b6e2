"""The rollup's task queue on SQS (a standard queue: at-least-once, any order; the workers are idempotent)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.ports import QueueConsumer, StoreUnavailable

_BATCH = 10  # SendMessageBatch and DeleteMessageBatch take at most 10 entries


class SqsQueue(QueueConsumer):
    def __init__(self, client: Any, queue_url: str) -> None:
        self.client, self.url = client, queue_url

    def send(self, bodies: list[str]) -> None:
        for i in range(0, len(bodies), _BATCH):
            entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[i : i + _BATCH])]
            out = self._call(self.client.send_message_batch, QueueUrl=self.url, Entries=entries)
            if out.get("Failed"):
                # Unsent tasks are no loss (the coordinator re-enqueues a bucket not rolled), but say so now.
                raise StoreUnavailable(f"SQS refused {len(out['Failed'])} of {len(entries)} tasks")

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
