"""The Chalice app: routes and the schedule, wired to handlers in chalicelib."""

from collections.abc import Callable
from typing import Any

from chalice import Chalice, Rate, Response
from chalice.app import CloudWatchEvent, Request

from chalicelib.observability import publish
from chalicelib.operator_metrics import after_rollup
from chalicelib.rollup import run_rollup
from chalicelib.routes import cells, ingest, internal, ops, webhooks
from chalicelib.routes.http import json_error_bodies
from chalicelib.services import services
from chalicelib.settings import current_settings
from chalicelib.telemetry import http_points

# Validate every flag at cold start: a bad BILL_FROM stops the function loudly, naming the flag.
current_settings()

app = Chalice(app_name="edge-billing")
app.register_blueprint(cells.bp)
app.register_blueprint(ingest.bp)
app.register_blueprint(internal.bp)
app.register_blueprint(ops.bp)
app.register_blueprint(webhooks.bp)
# Registered first, so it is the outermost: it also answers for an exception in a later middleware.
app.register_middleware(json_error_bodies, "http")


@app.middleware("http")
def http_metrics(event: Request, get_response: Callable[[Request], Response]) -> Response:
    # Webhook failures, provisioning conflicts and store outages, counted from the answer itself,
    # so no route needs a metrics call of its own.
    response = get_response(event)
    points = http_points(event.path, response.status_code)
    if points:
        publish(points, services().settings.WORKER_ENV)
    return response


@app.schedule(Rate(15, unit=Rate.MINUTES), name="rollup")
def scheduled_rollup(event: CloudWatchEvent) -> dict[str, Any]:
    svc = services()
    body = run_rollup(svc, trigger="schedule").body()
    after_rollup(svc, body)
    return body
