"""The Chalice app: wires the blueprints, middlewares and the schedule to chalicelib/entrypoints."""

from typing import Any

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.entrypoints import rollup_worker, schedule
from chalicelib.entrypoints.api import (
    cells_api,
    credits_api,
    ingest_api,
    internal_api,
    ops_api,
    status_api,
    stripe_events_api,
    stripe_webhook_api,
)
from chalicelib.entrypoints.api.http import http_metrics, json_error_bodies
from chalicelib.settings import current_settings

# Validate every flag at cold start: a bad BILL_FROM stops the function loudly, naming the flag.
current_settings()

app = Chalice(app_name="edge-billing")
for api in (cells_api, credits_api, ingest_api, internal_api, ops_api, status_api, stripe_events_api,
            stripe_webhook_api):
    app.register_blueprint(api.bp)
# Registered first, so it is the outermost: it also answers for an exception in a later middleware.
app.register_middleware(json_error_bodies, "http")
app.register_middleware(http_metrics, "http")


@app.schedule(Rate(15, unit=Rate.MINUTES), name="rollup")
def scheduled_rollup(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_rollup()


@app.schedule(Rate(1, unit=Rate.MINUTES), name="credits")
def scheduled_credits(event: CloudWatchEvent) -> dict[str, Any]:
    return schedule.scheduled_credits()


# One message per (bucket, shard) from the schedule's coordinator; the queue, its dead-letter queue and
# the alarms are in infra/rollup.json. Concurrency bounded so the workers' reads stay within the table's.
@app.on_sqs_message(queue="edge-billing-rollup-tasks", batch_size=10, name="rollup_worker", maximum_concurrency=50)
def rollup_worker_handler(event: SQSEvent) -> dict[str, Any]:
    return rollup_worker.on_sqs_records([r.to_dict() for r in event])
