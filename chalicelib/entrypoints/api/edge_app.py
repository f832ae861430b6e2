"""The edge's HTTP app: every module's routes (a blueprint made for this app) and the middlewares, registered on an
EdgeApp around the container it is handed.

app.py makes the deployed one (its container built from the environment at cold start); a test makes its own
around its own container (tests/conftest.py's `serve`).
"""

from __future__ import annotations

from chalicelib.bootstrap import Container
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
from chalicelib.entrypoints.api.http import EdgeApp, http_metrics, json_error_bodies

APIS = (cells_api, credits_api, ingest_api, internal_api, ops_api, status_api, stripe_events_api, stripe_webhook_api)


def make_app(container: Container) -> EdgeApp:
    app = EdgeApp(container)
    for api in APIS:
        app.register_blueprint(api.routes.blueprint(container))
    # Registered first, so it is the outermost: it also answers for an exception in a later middleware.
    app.register_middleware(json_error_bodies, "http")
    app.register_middleware(http_metrics(container), "http")
    return app
