"""The send fanned out: what the coordinator hands a send worker, on the wire of a FIFO queue.

One task names one Stripe customer and up to `max_rows` of its pending outbox rows, in bucket order.
The queue's message group is the customer: SQS FIFO hands out one message of a group at a time, so
two workers never call Stripe for the same customer at once (Stripe allows one concurrent meter-event
call per customer and meter; a group per customer is that, for all its meters together), while
different customers go to as many workers as the event source mapping runs.

The deduplication id is a digest of the task's content: the same rows offered again within SQS's
5-minute window are dropped by the queue; offered later, they are the same rows again, which a worker
finds sent already (their state) and skips. A task carries identifiers only, never values: the worker
reads each row and sends what the outbox holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from chalicelib.core.fanout import TaskError, task_fields

K = TypeVar("K", bound=Hashable)
MAX_TASK_ROWS = 100  # a task's rows at 250 ms a call: 25 s, well inside the worker's timeout
MAX_ROW_ID = 300


@dataclass(frozen=True)
class GroupedMessage:
    """A message for a FIFO queue: its body, its group (one in flight at a time) and its dedup id."""

    body: str
    group: str
    dedup_id: str


@dataclass(frozen=True)
class SendTask:
    customer: str
    rows: tuple[str, ...]

    def body(self) -> str:
        return json.dumps({"kind": "send", "customer": self.customer, "rows": list(self.rows)}, sort_keys=True)

    def message(self) -> GroupedMessage:
        # SQS takes at most 128 characters for either id: a digest of the customer keeps it in range.
        group = hashlib.sha256(self.customer.encode()).hexdigest()[:64]
        return GroupedMessage(self.body(), group, hashlib.sha256(self.body().encode()).hexdigest())


def parse_send_task(body: str) -> SendTask:
    data = task_fields(body, "send")
    customer, rows = data.get("customer"), data.get("rows")
    if not isinstance(customer, str) or not 0 < len(customer) <= MAX_ROW_ID:
        raise TaskError(f"bad customer: {body[:80]!r}")
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_TASK_ROWS or not all(
        isinstance(r, str) and 0 < len(r) <= MAX_ROW_ID for r in rows
    ):
        raise TaskError(f"bad rows: {body[:80]!r}")
    return SendTask(customer, tuple(rows))


def send_tasks(rows_by_customer: dict[str, list[str]], max_rows: int) -> list[SendTask]:
    """One task per customer and chunk of at most `max_rows` rows, in the order given (bucket order)."""
    size = max(1, min(max_rows, MAX_TASK_ROWS))
    return [SendTask(customer, tuple(ids[i : i + size]))
            for customer, ids in sorted(rows_by_customer.items()) for i in range(0, len(ids), size)]


def in_groups(tasks: Iterable[tuple[K, SendTask | None]]) -> dict[str, list[tuple[K, SendTask | None]]]:
    """A batch's messages per customer, each group in the order the queue delivered it (FIFO's order).

    A message that is no task (None) gets a group of its own: it fails alone and reaches the
    dead-letter queue without holding back a customer's messages in this batch.
    """
    groups: dict[str, list[tuple[K, SendTask | None]]] = {}
    for message_id, task in tasks:
        key = task.customer if task is not None else f"\0{message_id}"
        groups.setdefault(key, []).append((message_id, task))
    return groups


def backoff_seconds(attempt: int, retry_after: float | None, jitter: float, cap: float) -> float:
    """How long to wait before attempt `attempt + 1` after a 429: never less than Stripe's Retry-After
    (from 0.5 s without one), doubling per attempt, with `jitter` (0..1) spreading workers throttled
    together; never more than `cap` (a worker's budget is bounded: the queue retries the rest later)."""
    floor = retry_after if retry_after is not None and retry_after > 0 else 0.5
    wait = max(floor, floor * 2 ** max(0, attempt) * (0.5 + jitter / 2))
    return min(wait, cap)
