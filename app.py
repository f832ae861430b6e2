"""The Chalice app: the container built once at cold start, handed to the routes, middlewares and schedules."""

from typing import Any

from chalice import Rate
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.bootstrap import from_environment
from chalicelib.entrypoints import rollup_worker, schedule, send_worker
from chalicelib.entrypoints.api.edge_app import make_app

# Built at cold start: a bad flag (BILL_FROM, SHADOW, ...) stops the function loudly here, naming the flag.
app = make_app(from_environment())


@app.schedule(Rate(15, unit=Rate.MINUTES), name="rollup")
def scheduled_rollup(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_rollup(app.container)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="credits")
def scheduled_credits(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_credits(app.container)


# One message per (bucket, shard) from the schedule's coordinator; the queue, its dead-letter queue and
# the alarms are in infra/rollup.json. Concurrency bounded so the workers' reads stay within the table's.
@app.on_sqs_message(queue="edge-billing-rollup-tasks", batch_size=10, name="rollup_worker", maximum_concurrency=50)
def rollup_worker_handler(event: SQSEvent) -> dict[str, Any]:
    return rollup_worker.on_sqs_records(app.container, [r.to_dict() for r in event])


# One message per customer task from the schedule's coordinator, on a FIFO queue grouped by customer
# (one customer's calls never overlap); infra/send.json has the queue, its dead-letter queue and alarms.
# Bounded so the workers' calls stay under Stripe's 1,000/s (docs/capacity.md "Send").
@app.on_sqs_message(queue="edge-billing-send-tasks.fifo", batch_size=10, name="send_worker", maximum_concurrency=20)
def send_worker_handler(event: SQSEvent) -> dict[str, Any]:
    return send_worker.on_sqs_event(app.container, event)
