"""Stripe's meter error reports: receive one, mark what it names as not billed, and re-send once fixed.

Stripe accepts a meter event (200), validates the rest later and reports the events it could not
apply as a thin event. Such an event billed nothing, so its outbox row goes `sent -> failed` with the
report named in its detail (a row still `pending`, its answer lost, goes `pending -> failed`): the
page, the metric and the seam checks see it as not billed. Once the operator has fixed the cause (an
org's Stripe customer, a meter), `resend` creates one new pending row per failed row under a new,
deterministic identifier and moves the old one `failed -> resent`; the sender bills it once. Both
steps are conditional writes, so a redelivered report or a second `resend` changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalicelib.core.meter_error_report import (
    METER_EVENT_ERRORS,
    MeterErrorReport,
    report_from_event,
    resend_identifier,
)
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.telemetry import Point
from chalicelib.observability import logger, publish
from chalicelib.operator_ports import MeterErrorGateway, MeterErrorStore
from chalicelib.ports import OutboxStore


def mark_not_billed(store: OutboxStore, report: MeterErrorReport, now: int) -> list[str]:
    """Every outbox row the report names, now `failed` (or re-sent already): the rows it marked."""
    marked: list[str] = []
    for identifier in report.identifiers():
        row = store.get_outbox_row(identifier)
        if row is None:
            continue  # not the edge's (a cell's own event) or not ours at all: listed on the page
        code = next(e.code for e in report.errors if e.identifier == identifier)
        detail = f"stripe meter error report {report.event_id}: {code}"
        if row.state in ("sent", "pending"):
            store.transition(identifier, row.state, "failed", now, detail=detail)
            row = store.get_outbox_row(identifier) or row
        if row.state in ("failed", "resent"):
            marked.append(identifier)
    return marked


def receive(store: OutboxStore, reports: MeterErrorStore, gateway: MeterErrorGateway, event_id: str, now: int,
            environment: str) -> dict[str, Any]:
    """A verified thin event's report: fetched, its rows marked, stored once, counted once."""
    report = report_from_event(gateway.fetch_event(event_id), now)
    report = replace(report, marked=tuple(mark_not_billed(store, report, now)))
    new = reports.put_meter_error_report(report)
    if new:
        publish([Point(METER_EVENT_ERRORS, report.error_count)], environment)
        logger.error("meter_error_report", extra={"event_id": report.event_id, "type": report.event_type,
                                                  "error_count": report.error_count, "marked": list(report.marked),
                                                  "summary": report.summary})
    return {"received": True, "event_id": report.event_id, "new": new, "marked": list(report.marked),
            "error_count": report.error_count}


def resend_row(store: OutboxStore, row: OutboxRow, event_id: str, now: int) -> str | None:
    """One failed row again, under its re-send identifier; None if it is not failed (re-sent already)."""
    if row.state != "failed":
        return None
    new_id = resend_identifier(row.id, event_id)
    copy = replace(row, id=new_id, state="pending", created_at=now, sent_at=None, detail=f"re-send of {row.id}")
    store.create_outbox_rows([copy])  # an existing copy (a crash after it, a racing re-send) stays as it is
    store.transition(row.id, "failed", "resent", now, detail=f"re-sent as {new_id}")
    return new_id


def resend(store: OutboxStore, reports: MeterErrorStore, now: int, event_id: str | None = None) -> dict[str, Any]:
    """Re-send every row the stored reports (or the one named) marked and that is still failed."""
    chosen = [r for r in reports.meter_error_reports(limit=1000) if event_id in (None, r.event_id)]
    resent: list[dict[str, str]] = []
    for report in chosen:
        for identifier in report.marked:
            row = store.get_outbox_row(identifier)
            new_id = resend_row(store, row, report.event_id, now) if row else None
            if new_id:
                resent.append({"identifier": identifier, "as": new_id, "report": report.event_id})
                logger.warning("meter_event_resent", extra={"identifier": identifier, "as": new_id,
                                                           "report": report.event_id})
    return {"reports": [r.event_id for r in chosen], "resent": resent}
