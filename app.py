"""The Chalice app: routes and the schedule, wired to handlers in chalicelib."""

from chalice import Chalice

from chalicelib.routes import ingest, internal, ops
from chalicelib.settings import current_settings

# Validate every flag at cold start: a bad BILL_FROM stops the function loudly, naming the flag.
current_settings()

app = Chalice(app_name="edge-billing")
app.register_blueprint(ingest.bp)
app.register_blueprint(internal.bp)
app.register_blueprint(ops.bp)
