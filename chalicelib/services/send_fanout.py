"""The send fanned out per customer: a coordinator (the schedule) and workers (a FIFO queue's Lambda).

- The COORDINATOR reads the pending outbox rows (up to SEND_ENQUEUE_LIMIT), sets aside those Stripe
  would refuse (past its 35-day window: pending -> unbillable) or cannot take yet (no customer), and
  enqueues one task per customer and chunk of SEND_TASK_ROWS rows, in bucket order, on the send's
  FIFO queue: message group = customer, dedup id = digest of the task (core/send_tasks.py). It writes
  nothing for the rows it enqueues: a row is pending until a worker moved it, and the next run offers
  what is still pending again (the queue drops a repeat within 5 minutes; a later repeat costs the
  worker one read per row).
- A WORKER serves each customer (message group) of its batch in a thread of its own, the group's
  messages in order. For every row of a task it reads the row (strongly consistent), skips it unless
  it is pending, sends it under its deterministic identifier (`Sender.send_row`: Stripe's 429s
  waited out, bounded) and moves it with a conditional write: pending -> sent (or failed, if Stripe
  rejected it for good). A row Stripe asks to retry, a store failure or the worker's budget running
  out stops that customer: its message and the group's later ones in the batch are reported failed
  (FIFO keeps a group's order only if the rest of it fails too) and come back after the visibility
  timeout; the rows already sent stay sent.

A worker killed at any call, or a message delivered twice, changes nothing billed: a row Stripe
accepted but not yet marked goes again under the same identifier and Stripe answers "duplicate",
which marks it sent; a row marked sent is never sent again. tests/simulation/test_send_simulation.py
enumerates it.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.fanout import TaskError
from chalicelib.core.send_tasks import SendTask, in_groups, parse_send_task, send_tasks
from chalicelib.observability import logger
from chalicelib.ports import Clock, GroupedQueue
from chalicelib.services.sender import Sender, SendReport, SendStore, plan_send, set_aside
from chalicelib.settings import Settings
from chalicelib.stripe_ports import MeterEventGateway


def enqueue_sends(store: SendStore, queue: GroupedQueue, settings: Settings, now: int,
                  run_id: str) -> dict[str, Any]:
    """The coordinator: one task per customer and chunk of its pending rows on the FIFO queue."""
    rows = store.outbox_queue("pending", limit=settings.SEND_ENQUEUE_LIMIT)
    orgs = store.get_orgs({r.org_id for r in rows})
    plan = plan_send(rows, orgs, now)
    report = SendReport()
    set_aside(store, plan, now, run_id, report)
    by_customer: dict[str, list[str]] = defaultdict(list)
    for (customer, _meter), group in plan.groups.items():
        by_customer[customer] += [row.id for row, _ in group]  # each meter's rows stay in bucket order
    tasks = send_tasks(by_customer, settings.SEND_TASK_ROWS)
    queue.send_grouped([t.message() for t in tasks])
    if tasks:
        logger.info("send_tasks_enqueued", extra={"run_id": run_id, "tasks": len(tasks),
                                                  "rows": sum(len(t.rows) for t in tasks),
                                                  "customers": len(by_customer)})
    return {"tasks": len(tasks), "rows": sum(len(t.rows) for t in tasks), "customers": len(by_customer),
            "unbillable": report.counts.get("unbillable", 0),
            "waitingNoCustomer": report.counts.get("waitingNoCustomer", 0)}


@dataclass
class SendDone:
    """What one worker invocation did: the messages to retry, and its counts."""

    failed: list[Hashable] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class SendWorker:
    """One invocation's sender and its budget; `serve` takes one customer's messages, in order."""

    def __init__(self, store: SendStore, gateway: MeterEventGateway, clock: Clock, run_id: str,
                 deadline: float, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.sender = Sender(store, gateway, clock, run_id, deadline, sleep, jitter)

    def serve(self, group: list[tuple[Hashable, SendTask | None]]) -> list[Hashable]:
        """The ids of the group's messages to retry: the first that did not finish and every one after it."""
        for n, (message_id, task) in enumerate(group):
            if task is None or not self._task_done(message_id, task):
                return [m for m, _ in group[n:]]
        return []

    def _task_done(self, message_id: Hashable, task: SendTask) -> bool:
        try:
            for row_id in task.rows:
                if time.monotonic() > self.sender.deadline:
                    self.sender.report.add("outOfTime")
                    return False
                row = self.store.get_outbox_row(row_id)
                if row is None or row.state != "pending":
                    self.sender.report.add("skipped")  # sent already (a repeat), or no longer to send
                    continue
                if not self.sender.send_row(row, task.customer):
                    return False
        except Exception as exc:  # the store failed (503): the queue brings the message back
            logger.warning("send_task_failed", extra={"message_id": str(message_id), "customer": task.customer,
                                                      "error": repr(exc)[:300]})
            return False
        return True


def on_send_messages(store: SendStore, gateway: MeterEventGateway, settings: Settings, clock: Clock,
                     messages: Sequence[tuple[Hashable, str]], run_id: str, deadline: float | None = None,
                     sleep: Callable[[float], None] = time.sleep,
                     jitter: Callable[[], float] = random.random) -> SendDone:
    """A worker invocation over (message id, body) pairs in the order the queue delivered them."""
    if settings.SHADOW:
        # The stage went back to shadow (a rollback): nothing is sent. The messages are done with; their rows
        # stay as they are, and the coordinator offers the pending ones again once the stage is live.
        logger.warning("send_worker_in_shadow", extra={"run_id": run_id, "messages": len(messages)})
        return SendDone([], {"shadowSkipped": len(messages)})
    parsed: list[tuple[Hashable, SendTask | None]] = []
    for message_id, body in messages:
        try:
            parsed.append((message_id, parse_send_task(body)))
        except TaskError as exc:  # fails every time: ends on the dead-letter queue, whose alarm pages
            logger.error("send_task_unusable", extra={"message_id": str(message_id), "error": str(exc)})
            parsed.append((message_id, None))
    worker = SendWorker(store, gateway, clock, run_id,
                        deadline if deadline is not None else time.monotonic() + settings.SEND_WORKER_BUDGET_SECONDS,
                        sleep, jitter)
    groups = list(in_groups(parsed).values())
    threads = min(settings.SEND_WORKER_THREADS, len(groups))
    if threads <= 1:
        failed = [m for g in groups for m in worker.serve(g)]
    else:
        # One thread per customer: calls for different customers overlap, never two for one customer.
        with ThreadPoolExecutor(max_workers=threads) as pool:
            failed = [m for done in pool.map(worker.serve, groups) for m in done]
    return SendDone(failed, dict(worker.sender.report.counts))
