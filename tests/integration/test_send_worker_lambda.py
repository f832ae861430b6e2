"""The send worker Lambda's entry point: an SQS FIFO event in (Chalice's SQSEvent), partial batch failures out."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from chalice.app import SQSEvent

from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.entrypoints.send_worker import on_sqs_event
from chalicelib.services.send_fanout import enqueue_sends
from tests.conftest import T0
from tests.simulation.engine import SimStripe


class Context:
    """The Lambda context's one method the worker asks: the time left (120 s, its timeout)."""

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def sqs_event(bodies: list[str]) -> SQSEvent:
    records = [{"messageId": f"m{n}", "body": body, "receiptHandle": f"r{n}", "attributes": {},
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:edge-billing-send-tasks.fifo"}
               for n, body in enumerate(bodies)]
    return SQSEvent({"Records": records}, Context())


def test_the_worker_lambda_sends_its_tasks_and_names_only_the_unusable_message(svc: Container) -> None:
    svc.settings = svc.settings.model_copy(update={"SHADOW": False})  # the worker sends only when live
    stripe = SimStripe(svc.now)
    svc.meter_gateway = stripe
    svc.store.put_org(Org("acme", plan="pro", stripe_customer_id="cus_acme"))
    rows = [OutboxRow(f"acme:{T0}:{m}", "acme", T0, T0 + 3600, m, Decimal("2.5"), "first", "pending")
            for m in ("m1", "m2")]
    svc.store.create_outbox_rows(rows)
    queue = MemoryQueue(svc.now)
    enqueue_sends(svc.store, queue, svc.settings, svc.now(), "test")
    bodies = [body for _, body in queue.receive(10)] + ["not a task"]
    answer = on_sqs_event(svc, sqs_event(bodies))
    assert answer == {"batchItemFailures": [{"itemIdentifier": f"m{len(bodies) - 1}"}]}
    assert sorted(e.identifier for e in stripe.events) == sorted(r.id for r in rows)
    assert {svc.store.get_outbox_row(r.id).state for r in rows} == {"sent"}  # type: ignore[union-attr]


def test_a_row_stripe_rejects_is_failed_and_counted_for_the_rejections_alarm(
    svc: Container, capsys: Any
) -> None:
    from chalicelib.core.meter_events import Outcome

    class Rejects(SimStripe):
        def send_meter_event(self, event: Any) -> Any:
            from chalicelib.core.meter_events import SendResult

            return SendResult(Outcome.REJECTED, "No such customer")

    svc.settings = svc.settings.model_copy(update={"SHADOW": False})
    svc.meter_gateway = Rejects(svc.now)
    svc.store.put_org(Org("acme", plan="pro", stripe_customer_id="cus_acme"))
    row = OutboxRow(f"acme:{T0}:m1", "acme", T0, T0 + 3600, "m1", Decimal("2.5"), "first", "pending")
    svc.store.create_outbox_rows([row])
    queue = MemoryQueue(svc.now)
    enqueue_sends(svc.store, queue, svc.settings, svc.now(), "test")
    event = sqs_event([b for _, b in queue.receive(10)])
    capsys.readouterr()
    assert on_sqs_event(svc, event) == {"batchItemFailures": []}
    assert svc.store.get_outbox_row(row.id).state == "failed"  # type: ignore[union-attr]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m["MeterEventsRejected"] for m in emf if "MeterEventsRejected" in m] == [[1.0]]
