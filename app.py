"""The Chalice app: the container built once at cold start, handed to the routes, middlewares and schedules."""

from typing import Any

from chalice import Rate
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.bootstrap import from_environment
from chalicelib.entrypoints import rollup_worker, schedule, send_worker
from chalicelib.entrypoints.api.edge_app import make_app

# Built at cold start: a bad flag (BILL_FROM, SHADOW, ...) stops the function loudly here, naming the flag.
app = make_app(from_environment())


# Every 5 minutes: a closed hour bucket waits at most one period for its coordinator and one for the run that
# offers its rows to the send (docs/capacity.md: billed within 30 min of closing). A run with nothing to do
# reads the cursors and the open bucket's record; fan-out claims keep it from enqueueing a bucket twice.
@app.schedule(Rate(5, unit=Rate.MINUTES), name="rollup")
def scheduled_rollup(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_rollup(app.container)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="credits")
def scheduled_credits(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_credits(app.container)


# One message per (bucket, shard) from the schedule's coordinator; the queue, its dead-letter queue and
# the alarms are in infra/rollup.json. One task per invocation: a shard of an hour at the goal is ~75 s of
# work, so a batch of them handled one after another outlasts the timeout (docs/capacity.md). At most 25 at
# once: each reads its own shard (one partition, <= 3,000 RCU/s) at ~1,500 RCU/s on average between its CPU,
# so 25 stay within the samples table's 40,000 RRU/s on-demand quota, and 25 of the account's 1,000
# concurrent Lambdas (shared) leave the rest to ingest and the send.
@app.on_sqs_message(queue="edge-billing-rollup-tasks", batch_size=1, name="rollup_worker", maximum_concurrency=25)
def rollup_worker_handler(event: SQSEvent) -> dict[str, Any]:
    return rollup_worker.on_sqs_records(app.container, [r.to_dict() for r in event])


# One message per customer task from the schedule's coordinator, on a FIFO queue grouped by customer
# (one customer's calls never overlap); infra/send.json has the queue, its dead-letter queue and alarms.
# Bounded so the workers' calls stay under Stripe's 1,000/s (docs/capacity.md "Send").
@app.on_sqs_message(queue="edge-billing-send-tasks.fifo", batch_size=10, name="send_worker", maximum_concurrency=20)
def send_worker_handler(event: SQSEvent) -> dict[str, Any]:
    return send_worker.on_sqs_event(app.container, event)
