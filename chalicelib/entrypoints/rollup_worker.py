"""The rollup's worker Lambda (SQS, one message per bucket and shard): translate, run, report failures.

Only the messages that failed are named back (`batchItemFailures`, ReportBatchItemFailures on the
event source mapping): SQS retries those alone, and after maxReceiveCount moves them to the
dead-letter queue, whose alarm pages (infra/rollup.json).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from chalicelib.bootstrap import Container
from chalicelib.observability import logger
from chalicelib.services.rollup_fanout import on_messages


def on_sqs_records(svc: Container, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """SQS records (messageId, body) -> the partial batch failure answer, with the app's container."""
    run_id = f"worker-{svc.now()}-{uuid.uuid4().hex[:8]}"
    messages = [(str(r["messageId"]), str(r["body"])) for r in records]
    done = on_messages(svc.store, svc.settings, messages, run_id, svc.now)
    if done.rolled:
        logger.info("rollup_worker_rolled", extra={"run_id": run_id, "buckets": sorted(done.rolled)})
    return {"batchItemFailures": [{"itemIdentifier": str(m)} for m in done.failed]}
