"""The scheduled rollup (EventBridge, every 15 minutes): one run, then the operator's metrics."""

from __future__ import annotations

from typing import Any

from chalicelib.bootstrap import services
from chalicelib.services.operator_metrics import after_rollup
from chalicelib.services.rollup import run_rollup


def scheduled_rollup() -> dict[str, Any]:
    svc = services()
    body = run_rollup(svc, trigger="schedule").body()
    after_rollup(svc, body)
    return body
