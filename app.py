"""The Chalice app: routes and the schedule, wired to handlers in chalicelib."""

from typing import Any

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent

from chalicelib.rollup import run_rollup
from chalicelib.routes import ingest, internal, ops, webhooks
from chalicelib.routes.http import json_error_bodies
from chalicelib.services import services
from chalicelib.settings import current_settings

# Validate every flag at cold start: a bad BILL_FROM stops the function loudly, naming the flag.
current_settings()

app = Chalice(app_name="edge-billing")
app.register_blueprint(ingest.bp)
app.register_blueprint(internal.bp)
app.register_blueprint(ops.bp)
app.register_blueprint(webhooks.bp)
app.register_middleware(json_error_bodies, "http")


@app.schedule(Rate(15, unit=Rate.MINUTES), name="rollup")
def scheduled_rollup(event: CloudWatchEvent) -> dict[str, Any]:
    return run_rollup(services(), trigger="schedule").body()
