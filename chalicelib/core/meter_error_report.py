"""Stripe's meter error reports (`v1.billing.meter.error_report_triggered`, `v1.billing.meter.no_meter_found`).

Stripe accepts a meter event, validates part of it later (the customer the meter maps it to, the
meter itself) and reports what it could not apply as a thin event; the full report is fetched from
`/v2/core/events/{id}`. Pure: the report's shape, and the identifier a re-send goes out under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ERROR_REPORT_TRIGGERED = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"
REPORT_TYPES = frozenset({ERROR_REPORT_TRIGGERED, NO_METER_FOUND})
MAX_TEXT = 500


class MalformedReport(ValueError):
    """The fetched event is not a meter error report this code can read."""


@dataclass(frozen=True)
class MeterError:
    code: str
    message: str
    identifier: str  # the meter event's identifier (our outbox row id when the edge sent it)


@dataclass(frozen=True)
class MeterErrorReport:
    event_id: str
    event_type: str
    meter_id: str | None
    created: str  # Stripe's RFC 3339 time, as sent
    summary: str
    error_count: int  # Stripe's total: its samples may name fewer identifiers than this
    errors: tuple[MeterError, ...]
    received_at: int
    marked: tuple[str, ...] = ()  # outbox rows this report marked not billed

    def identifiers(self) -> list[str]:
        return sorted({e.identifier for e in self.errors if e.identifier})

    def body(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "type": self.event_type, "meter_id": self.meter_id,
                "created": self.created, "received_at": self.received_at, "summary": self.summary,
                "error_count": self.error_count, "marked": list(self.marked),
                "errors": [{"code": e.code, "message": e.message, "identifier": e.identifier} for e in self.errors]}


def _text(value: object, default: str = "") -> str:
    return (value if isinstance(value, str) else default)[:MAX_TEXT]


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedReport(f"error_count must be a non-negative integer, got {value!r}")
    return value


def _errors(reason: Mapping[str, Any]) -> tuple[MeterError, ...]:
    out: list[MeterError] = []
    kinds = reason.get("error_types") or []
    if not isinstance(kinds, list) or not all(isinstance(k, Mapping) for k in kinds):
        raise MalformedReport("error_types must be a list of objects")
    for kind in kinds:
        samples = kind.get("sample_errors")
        for sample in samples if isinstance(samples, list) else []:
            sample = sample if isinstance(sample, Mapping) else {}
            request = sample.get("request")
            identifier = request.get("identifier") if isinstance(request, Mapping) else None
            out.append(MeterError(_text(kind.get("code"), "unknown"), _text(sample.get("error_message")),
                                  _text(identifier)))
    return tuple(out)


def report_from_event(event: Mapping[str, Any], received_at: int) -> MeterErrorReport:
    """A fetched v2 event (`/v2/core/events/{id}`) as a report; MalformedReport if it is not one."""
    event_type, event_id = event.get("type"), event.get("id")
    if event_type not in REPORT_TYPES or not isinstance(event_id, str) or not event_id:
        raise MalformedReport(f"not a meter error report: type {event_type!r}, id {event_id!r}")
    data = event.get("data")
    reason = data.get("reason") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping) or not isinstance(reason, Mapping):
        raise MalformedReport("the event has no data.reason")
    related = event.get("related_object")
    meter_id = related.get("id") if isinstance(related, Mapping) else None
    return MeterErrorReport(
        event_id=event_id[:255], event_type=event_type, meter_id=_text(meter_id) or None,
        created=_text(event.get("created")), summary=_text(data.get("developer_message_summary")),
        error_count=_count(reason.get("error_count", 0)), errors=_errors(reason), received_at=received_at)


def resend_identifier(row_id: str, event_id: str) -> str:
    """The identifier a re-send of `row_id` after report `event_id` goes out under: new, because Stripe
    keeps an identifier unique for 24 h whether or not it could apply the event, and deterministic, so
    running the re-send twice creates one row, never two."""
    return f"{row_id}:resend:{hashlib.sha256(event_id.encode()).hexdigest()[:12]}"


# EMF metric (alarm MeterEventErrorsAlarm in infra/template.json): meter events Stripe accepted and then
# reported it could not apply, counted once per report (Stripe's error_count).
METER_EVENT_ERRORS = "MeterEventErrors"
