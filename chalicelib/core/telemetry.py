"""What an operator watches during and after the seam, as metric points (pure; published by observability.py).

Every name here has an alarm in infra/template.json and a line in
docs/runbook.md saying what it means and what to do. Points carry only the
`environment` dimension (plus `cell_id` for per-cell series, which are
emitted twice: per cell for the dashboard, and fleet-wide for the alarm).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.core.cell_reports import ParityReport, drift_exceeds

NAMESPACE = "EdgeBilling"

METER_EVENTS_REJECTED = "MeterEventsRejected"
METER_EVENTS_UNBILLABLE = "MeterEventsUnbillable"
ROWS_WAITING_FOR_CUSTOMER = "RowsWaitingForCustomer"
UNBILLED_MEMORY_SIZES = "UnbilledMemorySizes"
UNBILLED_MEMORY_SECONDS = "UnbilledMemorySeconds"
OUTBOX_AGE = "OutboxAgeSeconds"
STRAGGLERS = "StragglerSamples"
STRAGGLERS_WAITING = "StragglersWaiting"
PARITY_DRIFT = "ParityDriftPercent"
PARITY_DRIFTING_ORGS = "ParityDriftingOrgs"
PARITY_REPORTS_MISSING = "ParityReportsMissing"
WEBHOOK_FAILURES = "WebhookFailures"
WEBHOOK_REJECTED = "WebhookRejected"
WEBHOOK_UNUSABLE = "WebhookUnusable"
PROVISIONING_CONFLICTS = "ProvisioningConflicts"
STORE_UNAVAILABLE = "StoreUnavailable"
FREE_ORGS_HALTED = "FreeOrgsHalted"
FREE_ORGS_RESUMED = "FreeOrgsResumed"
HALT_PUSH_FAILING = "HaltPushFailing"

WEBHOOK_PATH = "/webhooks/stripe"


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    unit: str = "Count"  # a Powertools MetricUnit name
    dimensions: Mapping[str, str] = field(default_factory=dict)


def _count(body: Mapping[str, Any] | None, key: str) -> int:
    return int((body or {}).get(key) or 0)


def rollup_points(run: Mapping[str, Any]) -> list[Point]:
    """From one scheduled run's answer (RunResult.body()); a skipped run says nothing."""
    if run.get("skipped"):
        return []
    roll = run.get("roll") or {}
    late = roll.get("late") or {}
    send = run.get("send")
    unknown = list(roll.get("unbilled") or []) + list(late.get("unbilled") or [])
    seconds = sum((Decimal(str(u.get("seconds", 0))) for u in unknown), Decimal(0))
    points = [
        Point(UNBILLED_MEMORY_SIZES, len({u.get("memory_mb") for u in unknown})),
        Point(UNBILLED_MEMORY_SECONDS, float(seconds), "Seconds"),
        Point(STRAGGLERS, _count(late, "samples")),
        Point(STRAGGLERS_WAITING, _count(late, "waiting")),
    ]
    if send is not None:  # live only: in shadow nothing is sent, so nothing can be rejected
        points += [
            Point(METER_EVENTS_REJECTED, _count(send, "failed")),
            Point(METER_EVENTS_UNBILLABLE, _count(send, "unbillable")),
            Point(ROWS_WAITING_FOR_CUSTOMER, _count(send, "waitingNoCustomer")),
        ]
    return points


def send_worker_points(counts: Mapping[str, int]) -> list[Point]:
    """From one send worker invocation's counts: with the send fanned out, Stripe's rejections happen there."""
    return [Point(METER_EVENTS_REJECTED, _count(counts, "failed"))]


def outbox_age_point(oldest_pending_bucket_end: int | None, now: int) -> Point:
    """How long the oldest unsent meter event has waited since its bucket closed (0 when none waits)."""
    age = 0 if oldest_pending_bucket_end is None else max(0, now - oldest_pending_bucket_end)
    return Point(OUTBOX_AGE, age, "Seconds")


def parity_points(report: ParityReport) -> list[Point]:
    drift = float(report.max_drift * 100)
    drifting = len(drift_exceeds(report))
    cell = {"cell_id": report.cell_id}
    return [
        Point(PARITY_DRIFT, drift, "Percent", cell),
        Point(PARITY_DRIFT, drift, "Percent"),
        Point(PARITY_DRIFTING_ORGS, drifting, "Count", cell),
        Point(PARITY_DRIFTING_ORGS, drifting),
    ]


def expected_parity_window(now: int) -> tuple[int, int]:
    """The hour every cell should have reported by now: the last settled hour before the current one
    (a cell checks the last settled hour each hour, so a full hour of slack)."""
    end = (now - 3600) // 3600 * 3600
    return end - 3600, end


def missing_report_points(present: Mapping[str, bool]) -> list[Point]:
    points = [
        Point(PARITY_REPORTS_MISSING, 0 if ok else 1, "Count", {"cell_id": c}) for c, ok in sorted(present.items())
    ]
    points.append(Point(PARITY_REPORTS_MISSING, sum(not ok for ok in present.values())))
    return points


def http_points(path: str, status: int, body: object = None) -> list[Point]:
    """From one API answer: the webhook's failures, conflicts and unusable events, and store outages on
    any route. An unusable event is answered 200 (no retry could help), so only its body tells."""
    points: list[Point] = []
    if path == WEBHOOK_PATH:
        if status == 200 and isinstance(body, dict) and "unusable" in body:
            points.append(Point(WEBHOOK_UNUSABLE, 1))
        elif status >= 500:
            points.append(Point(WEBHOOK_FAILURES, 1))
        elif status == 409:
            points.append(Point(PROVISIONING_CONFLICTS, 1))
        elif status >= 400:
            points.append(Point(WEBHOOK_REJECTED, 1))
    # A parity window not settled yet is a 503 too (Retry-After: the cell waits), but no outage.
    if status == 503 and not (isinstance(body, dict) and "settling" in body):
        points.append(Point(STORE_UNAVAILABLE, 1))
    return points


def credit_points(round_body: Mapping[str, Any]) -> list[Point]:
    """From one free-tier round (services/halt_push.credit_round): halts, resumes, pushes no cell acks."""
    push = round_body.get("push") or {}
    return [Point(FREE_ORGS_HALTED, _count(push, "halts")), Point(FREE_ORGS_RESUMED, _count(push, "resumes")),
            Point(HALT_PUSH_FAILING, len(push.get("failing") or []))]
