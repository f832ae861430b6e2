"""MeterErrorStore under contract: the in-memory and the DynamoDB adapters answer alike."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.dynamodb.meter_errors import DynamoMeterErrors
from chalicelib.adapters.memory.operator import MemoryMeterErrors
from chalicelib.core.meter_error_report import ERROR_REPORT_TRIGGERED, MeterError, MeterErrorReport
from chalicelib.operator_ports import MeterErrorStore
from tests.conftest import PREFIX


@pytest.fixture(params=["memory", "dynamodb"])
def reports(request: pytest.FixtureRequest) -> MeterErrorStore:
    if request.param == "memory":
        return MemoryMeterErrors()
    dynamodb: Any = request.getfixturevalue("dynamodb")
    return DynamoMeterErrors(dynamodb, PREFIX)


def report(event_id: str, received_at: int, marked: tuple[str, ...] = ()) -> MeterErrorReport:
    return MeterErrorReport(event_id, ERROR_REPORT_TRIGGERED, "mtr_1", "2026-11-25T00:00:00.000Z",
                            "There is 1 invalid event", 1,
                            (MeterError("meter_event_customer_not_found", "No customer", "acme:1:m"),),
                            received_at, marked)


def test_a_report_is_stored_once_and_read_back_whole(reports: MeterErrorStore) -> None:
    first = report("evt_1", 100, ("acme:1:m",))
    assert reports.put_meter_error_report(first) is True
    assert reports.put_meter_error_report(report("evt_1", 200)) is False, "a redelivery keeps the first"
    assert reports.meter_error_reports() == [first]


def test_reports_come_newest_first_and_limited(reports: MeterErrorStore) -> None:
    for i, at in enumerate([300, 100, 200]):
        reports.put_meter_error_report(report(f"evt_{i}", at))
    assert [r.event_id for r in reports.meter_error_reports()] == ["evt_0", "evt_2", "evt_1"]
    assert [r.event_id for r in reports.meter_error_reports(limit=1)] == ["evt_0"]
    assert reports.meter_error_reports(limit=0) == []
