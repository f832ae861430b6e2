"""Stripe's meter error reports, pure: reading a fetched event, and the re-send identifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.core.meter_error_report import (
    ERROR_REPORT_TRIGGERED,
    METER_EVENT_ERRORS,
    NO_METER_FOUND,
    MalformedReport,
    report_from_event,
    resend_identifier,
)

ROOT = Path(__file__).resolve().parents[2]
# Stripe's own example of a fetched event (docs.stripe.com/api/v2/core/events/object).
STRIPE_EXAMPLE: dict[str, Any] = {
    "id": "evt_test_65RCjj4EqW1sabcjs2Z16RCMoNQdSQkOWvfL6L5uU2K40u", "object": "v2.core.event", "context": None,
    "created": "2024-09-26T17:46:22.134Z",
    "data": {"developer_message_summary": "There is 1 invalid event",
             "reason": {"error_count": 1, "error_types": [{
                 "code": "meter_event_no_customer_defined", "error_count": 1,
                 "sample_errors": [{"error_message": "Customer mapping key stripe_customer_id not found in payload.",
                                    "request": {"identifier": "cb447754-6880-45c2-8f2f-ef19b6ce81e9"}}]}]},
             "validation_end": "2024-09-26T17:46:20.000Z", "validation_start": "2024-09-26T17:46:10.000Z"},
    "livemode": False, "reason": None,
    "related_object": {"id": "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc", "type": "billing.meter",
                       "url": "/v1/billing/meters/mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc"},
    "type": ERROR_REPORT_TRIGGERED,
}


def test_stripes_example_reads_whole() -> None:
    r = report_from_event(STRIPE_EXAMPLE, received_at=7)
    assert (r.event_type, r.error_count, r.received_at) == (ERROR_REPORT_TRIGGERED, 1, 7)
    assert r.meter_id == "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc"
    assert r.identifiers() == ["cb447754-6880-45c2-8f2f-ef19b6ce81e9"]
    assert r.body()["errors"][0]["code"] == "meter_event_no_customer_defined"


def test_no_meter_found_has_no_related_object() -> None:
    event = {k: v for k, v in STRIPE_EXAMPLE.items() if k != "related_object"} | {"type": NO_METER_FOUND}
    assert report_from_event(event, 0).meter_id is None


@pytest.mark.parametrize("change", [
    {"type": "v1.billing.meter.created"}, {"id": ""}, {"id": 5}, {"data": None}, {"data": {"reason": "x"}},
    {"data": {"reason": {"error_count": -1}}}, {"data": {"reason": {"error_count": True}}},
    {"data": {"reason": {"error_count": 1, "error_types": ["x"]}}},
])
def test_what_is_not_a_report_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedReport):
        report_from_event(STRIPE_EXAMPLE | change, 0)


def test_odd_samples_keep_what_they_can() -> None:
    event = json.loads(json.dumps(STRIPE_EXAMPLE))
    event["data"]["reason"]["error_types"][0]["sample_errors"] = [{"error_message": 3}, "junk"]
    r = report_from_event(event, 0)
    assert r.identifiers() == [] and [e.message for e in r.errors] == ["", ""]


def test_the_resend_identifier_is_new_and_deterministic() -> None:
    a = resend_identifier("acme:1:m", "evt_1")
    assert a == resend_identifier("acme:1:m", "evt_1") != resend_identifier("acme:1:m", "evt_2")
    assert a.startswith("acme:1:m:resend:") and a != "acme:1:m"


def test_the_metric_has_an_alarm() -> None:
    resources = json.loads((ROOT / "infra" / "template.json").read_text())["Resources"]
    assert any(r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["MetricName"] == METER_EVENT_ERRORS
               for r in resources.values())
