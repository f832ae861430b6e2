"""The send's worker Lambda (SQS FIFO, one message per customer task): translate, run, report failures.

Only the messages that failed are named back (`batchItemFailures`, ReportBatchItemFailures on the
event source mapping); for a FIFO queue the service names a failed message and every later one of
its customer in the batch, so the customer's order holds. After maxReceiveCount SQS moves a message to
the dead-letter queue, whose alarm pages (infra/send.json); its rows stay pending in the outbox and
the coordinator offers them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from chalicelib.bootstrap import Container
from chalicelib.core.telemetry import send_worker_points
from chalicelib.observability import logger, publish
from chalicelib.services.send_fanout import on_send_messages

# The budget ends with a third of the Lambda's time left: for the last Stripe call and the answer.
_BUDGET_SHARE = 2 / 3


def on_sqs_event(svc: Container, event: Any) -> dict[str, Any]:
    """Chalice's SQSEvent: its records, and the time its Lambda context says is left."""
    remaining = getattr(event.context, "get_remaining_time_in_millis", None)
    return on_sqs_records(svc, [r.to_dict() for r in event], remaining() if callable(remaining) else None)


def on_sqs_records(svc: Container, records: Sequence[dict[str, Any]],
                   remaining_ms: int | None = None) -> dict[str, Any]:
    """SQS records (messageId, body), in the queue's order -> the partial batch failure answer."""
    run_id = f"send-{svc.now()}-{uuid.uuid4().hex[:8]}"
    budget: float = svc.settings.SEND_WORKER_BUDGET_SECONDS
    if remaining_ms is not None:
        budget = min(budget, remaining_ms * _BUDGET_SHARE / 1000)
    messages = [(str(r["messageId"]), str(r["body"])) for r in records]
    done = on_send_messages(svc.store, svc.stripe_gateway(), svc.settings, svc.clock, messages, run_id,
                            deadline=time.monotonic() + budget)
    logger.info("send_worker_done", extra={"run_id": run_id, "messages": len(messages),
                                           "failed": len(done.failed), **done.counts})
    publish(send_worker_points(done.counts), svc.settings.WORKER_ENV)  # MeterEventsRejected's alarm
    return {"batchItemFailures": [{"itemIdentifier": str(m)} for m in done.failed]}
