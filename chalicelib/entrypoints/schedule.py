"""The scheduled rollup (EventBridge, every 5 minutes): one run, then the operator's metrics;
and the free tier's round (every minute): the spend pass and the halt/resume pushes."""

from __future__ import annotations

from typing import Any

from chalicelib.bootstrap import Container
from chalicelib.core.telemetry import credit_points
from chalicelib.observability import publish
from chalicelib.services.halt_push import credit_round
from chalicelib.services.operator_metrics import after_rollup
from chalicelib.services.rollup import run_rollup


def scheduled_rollup(svc: Container) -> dict[str, Any]:
    body = run_rollup(svc, trigger="schedule").body()
    after_rollup(svc, body)
    return body


def scheduled_credits(svc: Container) -> dict[str, Any]:
    body = credit_round(svc.store, svc.credits(), svc.cells(), svc.pusher(), svc.settings, svc.now())
    publish(credit_points(body), svc.settings.WORKER_ENV)
    return body
