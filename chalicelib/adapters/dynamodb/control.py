"""Per-bucket state and aggregates, the rollup's lease and cursor."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, conditional_write, from_item, guarded, to_item
from chalicelib.adapters.dynamodb.items import aggregate_from_item, aggregate_to_item
from chalicelib.core.aggregation import OrgAggregate


class ControlRecords(Tables):
    @guarded
    def bucket_state(self, bucket_start: int) -> dict[str, Any] | None:
        out = self.client.get_item(
            TableName=self.control_table,
            Key={"pk": {"S": "bucket"}, "sk": {"S": f"{bucket_start:012d}"}},
            ConsistentRead=True,
        )
        return from_item(out["Item"]) if "Item" in out else None

    @guarded
    def save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        if self.bucket_state(bucket_start) is not None:
            return False
        expires = bucket_start + self.retention_seconds
        # Identical content from every writer, so racing writers put the same items.
        self._batch_write(
            self.control_table,
            [{"PutRequest": {"Item": aggregate_to_item(a, expires)}} for a in aggregates],
        )
        return conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item=to_item(
                {
                    "pk": "bucket",
                    "sk": f"{bucket_start:012d}",
                    "bucket_start": bucket_start,
                    "state": "aggregated",
                    "orgs": len(aggregates),
                    "report": json.dumps(report, sort_keys=True, default=str),
                    "expires_at": expires,
                }
            ),
            ConditionExpression="attribute_not_exists(pk)",
        )

    @guarded
    def aggregates(self, bucket_start: int) -> list[OrgAggregate]:
        items = self._query(
            TableName=self.control_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"agg#{bucket_start}"}},
            ConsistentRead=True,
        )
        return [aggregate_from_item(i) for i in items]

    @guarded
    def mark_bucket_rolled(self, bucket_start: int, report: dict[str, Any]) -> bool:
        return conditional_write(
            self.client.update_item,
            TableName=self.control_table,
            Key={"pk": {"S": "bucket"}, "sk": {"S": f"{bucket_start:012d}"}},
            UpdateExpression="SET #s = :rolled, #r = :report",
            ConditionExpression="#s = :aggregated",
            ExpressionAttributeNames={"#s": "state", "#r": "report"},
            ExpressionAttributeValues=to_item(
                {
                    ":rolled": "rolled",
                    ":aggregated": "aggregated",
                    ":report": json.dumps(report, sort_keys=True, default=str),
                }
            ),
        )

    @guarded
    def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool:
        return conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item=to_item(
                {"pk": "lease", "sk": name, "owner": owner, "lease_until": now + seconds, "acquired_at": now}
            ),
            ConditionExpression="attribute_not_exists(pk) OR lease_until <= :now",
            ExpressionAttributeValues={":now": {"N": str(now)}},
        )

    @guarded
    def release_lease(self, name: str, owner: str) -> None:
        conditional_write(
            self.client.delete_item,
            TableName=self.control_table,
            Key={"pk": {"S": "lease"}, "sk": {"S": name}},
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": {"S": owner}},
        )

    @guarded
    def cursor(self, name: str) -> int | None:
        out = self.client.get_item(
            TableName=self.control_table, Key={"pk": {"S": "cursor"}, "sk": {"S": name}}, ConsistentRead=True
        )
        return int(out["Item"]["value"]["N"]) if "Item" in out else None

    @guarded
    def advance_cursor(self, name: str, value: int) -> None:
        conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item=to_item({"pk": "cursor", "sk": name, "value": value}),
            ConditionExpression="attribute_not_exists(pk) OR #v < :v",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":v": {"N": str(value)}},
        )
