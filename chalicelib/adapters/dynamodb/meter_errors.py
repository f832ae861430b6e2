"""DynamoDB adapter for Stripe's meter error reports (control table).

Layout (docs/data-model.md): `meter_error` / `{event_id}`, one item per report, written once
(a redelivered thin event finds it there), expiring after 90 days. Reports are rare (Stripe sends
at most one per meter and validation window), so the page reads the one partition and sorts.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.adapters.dynamodb.common import conditional_write, from_item, guarded, to_item
from chalicelib.core.meter_error_report import MeterError, MeterErrorReport
from chalicelib.operator_ports import MeterErrorStore

PK = "meter_error"
RETENTION_SECONDS = 90 * 86400
MAX_ERRORS = 100  # Stripe sends a few samples per error type; keep the item far below 400 KB


def report_to_item(r: MeterErrorReport) -> dict[str, Any]:
    errors = [[e.code, e.message, e.identifier] for e in r.errors[:MAX_ERRORS]]
    return to_item({"pk": PK, "sk": r.event_id, "event_type": r.event_type, "meter_id": r.meter_id,
                    "created": r.created, "summary": r.summary, "error_count": r.error_count,
                    "errors": json.dumps(errors), "marked": json.dumps(list(r.marked)),
                    "received_at": r.received_at, "expires_at": r.received_at + RETENTION_SECONDS})


def report_from_item(item: dict[str, Any]) -> MeterErrorReport:
    d = from_item(item)
    return MeterErrorReport(
        event_id=d["sk"], event_type=d["event_type"], meter_id=d.get("meter_id"), created=d["created"],
        summary=d["summary"], error_count=int(d["error_count"]),
        errors=tuple(MeterError(c, m, i) for c, m, i in json.loads(d["errors"])),
        received_at=int(d["received_at"]), marked=tuple(json.loads(d["marked"])))


class DynamoMeterErrors(MeterErrorStore):
    def __init__(self, client: Any, table_prefix: str) -> None:
        self.client = client
        self.control_table = f"{table_prefix}-control"

    @guarded
    def put_meter_error_report(self, report: MeterErrorReport) -> bool:
        return conditional_write(self.client.put_item, TableName=self.control_table, Item=report_to_item(report),
                                 ConditionExpression="attribute_not_exists(pk)")

    @guarded
    def meter_error_reports(self, limit: int = 50) -> list[MeterErrorReport]:
        reports: list[MeterErrorReport] = []
        request: dict[str, Any] = {"TableName": self.control_table, "KeyConditionExpression": "pk = :pk",
                                   "ExpressionAttributeValues": {":pk": {"S": PK}}, "ConsistentRead": True}
        while True:
            out = self.client.query(**request)
            reports.extend(report_from_item(i) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                break
            request["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return sorted(reports, key=lambda r: (-r.received_at, r.event_id))[:max(limit, 0)]
