"""DynamoDB adapter for what cells report: parity reports and cell status (control table).

Layout (docs/data-model.md): `parity#{cell_id}` / `{from:012d}#{to:012d}` per
report, `cell` / `{cell_id}` per cell. Both writes are conditional on the
request's signed timestamp, so a delayed retry of an older post never
replaces a newer one.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

from chalicelib.adapters.dynamodb.common import conditional_write, from_item, guarded, to_item
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.ports import CellStore

PARITY_PREFIX = "parity#"
CELL_PK = "cell"
# Reports outlive the 24 h soak window by far: they are the record of why the cutover was allowed.
REPORT_RETENTION_SECONDS = 90 * 86400
NEWER_WINS = "attribute_not_exists(pk) OR signed_at <= :ts"


def window_sk(window_from: int, window_to: int) -> str:
    return f"{window_from:012d}#{window_to:012d}"


def report_to_item(r: ParityReport) -> dict[str, Any]:
    orgs = [
        [o.org_id, str(o.cell_gb_seconds), str(o.edge_gb_seconds), None if o.drift is None else str(o.drift)]
        for o in r.orgs
    ]
    worst = r.worst_org
    return to_item(
        {
            "pk": PARITY_PREFIX + r.cell_id,
            "sk": window_sk(r.window_from, r.window_to),
            "cell_id": r.cell_id,
            "window_from": r.window_from,
            "window_to": r.window_to,
            "tolerance": r.tolerance,
            "clean": r.clean,
            "org_count": len(r.orgs),
            "max_drift": r.max_drift,
            "worst_org": worst.org_id if worst else None,
            # Compressed: a cell with thousands of pro orgs stays far below DynamoDB's 400 KB item limit.
            "orgs_z": zlib.compress(json.dumps(orgs, separators=(",", ":")).encode()),
            "signed_at": r.signed_at,
            "received_at": r.received_at,
            "expires_at": r.window_to + REPORT_RETENTION_SECONDS,
        }
    )


def report_from_item(item: dict[str, Any]) -> ParityReport:
    d = from_item(item)
    raw = json.loads(zlib.decompress(bytes(d["orgs_z"])))
    orgs = tuple(
        OrgParity(o, Decimal(c), Decimal(e), None if drift is None else Decimal(drift)) for o, c, e, drift in raw
    )
    return ParityReport(
        cell_id=d["cell_id"],
        window_from=int(d["window_from"]),
        window_to=int(d["window_to"]),
        tolerance=Decimal(d["tolerance"]),
        orgs=orgs,
        clean=bool(d["clean"]),
        signed_at=int(d["signed_at"]),
        received_at=int(d.get("received_at", 0)),
    )


def status_from_item(item: dict[str, Any]) -> CellStatus:
    d = from_item(item)
    return CellStatus(
        cell_id=d["sk"],
        authority=d["authority"],
        billers_running=bool(d["billers_running"]),
        billed_through=int(d["billed_through"]),
        pending_billable=int(d["pending_billable"]),
        spool_depth=int(d["spool_depth"]),
        signed_at=int(d["signed_at"]),
        reported_at=int(d["reported_at"]),
        base_url=d.get("base_url"),
    )


class DynamoCells(CellStore):
    def __init__(self, client: Any, table_prefix: str) -> None:
        self.client = client
        self.control_table = f"{table_prefix}-control"

    def _put_newer(self, item: dict[str, Any], signed_at: int) -> bool:
        return conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item=item,
            ConditionExpression=NEWER_WINS,
            ExpressionAttributeValues={":ts": {"N": str(signed_at)}},
        )

    @guarded
    def put_parity_report(self, report: ParityReport) -> bool:
        return self._put_newer(report_to_item(report), report.signed_at)

    @guarded
    def parity_reports(self, cell_id: str, window_from: int, window_to: int) -> list[ParityReport]:
        reports: list[ParityReport] = []
        request: dict[str, Any] = {
            "TableName": self.control_table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": PARITY_PREFIX + cell_id},
                ":lo": {"S": f"{window_from:012d}#"},
                # "#" sorts before digits, so this stops before any window starting at window_to.
                ":hi": {"S": f"{window_to - 1:012d}#~"},
            },
            "ConsistentRead": True,
        }
        while True:
            out = self.client.query(**request)
            reports.extend(report_from_item(i) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                return reports
            request["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    @guarded
    def put_cell_status(self, status: CellStatus) -> bool:
        item = to_item(
            {
                "pk": CELL_PK,
                "sk": status.cell_id,
                "authority": status.authority,
                "billers_running": status.billers_running,
                "billed_through": status.billed_through,
                "pending_billable": status.pending_billable,
                "spool_depth": status.spool_depth,
                "signed_at": status.signed_at,
                "reported_at": status.reported_at,
                "base_url": status.base_url,
            }
        )
        return self._put_newer(item, status.signed_at)

    @guarded
    def cell_statuses(self) -> list[CellStatus]:
        statuses: list[CellStatus] = []
        request: dict[str, Any] = {
            "TableName": self.control_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": CELL_PK}},
            "ConsistentRead": True,
        }
        while True:
            out = self.client.query(**request)
            statuses.extend(status_from_item(i) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                return statuses
            request["ExclusiveStartKey"] = out["LastEvaluatedKey"]
