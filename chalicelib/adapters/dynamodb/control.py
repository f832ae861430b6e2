"""Per-bucket state and aggregates, the rollup's lease and cursor."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, conditional_write, from_item, guarded, to_item
from chalicelib.adapters.dynamodb.items import (
    aggregate_from_item,
    aggregate_to_item,
    partial_prefix,
    partial_rows,
    partial_to_items,
)
from chalicelib.adapters.dynamodb.parallel import AGGREGATE_PUTS_AT_ONCE, count_each
from chalicelib.core.aggregation import BucketState, OrgAggregate

# Orgs per partial item: ~150 bytes each leaves an item well under DynamoDB's 400 KB.
PARTIAL_ORGS_PER_ITEM = 1000


def _done(start: int, late: bool) -> str:
    return f"{'latedone' if late else 'partdone'}#{start}"


class ControlRecords(Tables):
    aggregate_puts_at_once = AGGREGATE_PUTS_AT_ONCE  # 1: one after another (a test's deterministic order)

    @guarded
    def bucket_state(self, bucket_start: int) -> BucketState | None:
        out = self.client.get_item(
            TableName=self.control_table,
            Key={"pk": {"S": "bucket"}, "sk": {"S": f"{bucket_start:012d}"}},
            ConsistentRead=True,
        )
        if "Item" not in out:
            return None
        d = from_item(out["Item"])
        return BucketState(bucket_start, "rolled" if d["state"] == "rolled" else "aggregated", int(d.get("orgs", 0)))

    # A late slot's partials and claim live beside the buckets' under their own keys (`late=True`).
    @guarded
    def put_partial(self, bucket_start: int, shard: int, aggregates: list[OrgAggregate], late: bool = False) -> None:
        expires = bucket_start + self.retention_seconds
        items = partial_to_items(bucket_start, shard, aggregates, expires, PARTIAL_ORGS_PER_ITEM, late)
        self._batch_write(self.control_table, [{"PutRequest": {"Item": i}} for i in items])
        # The marker last: a worker killed before it leaves the shard absent, and its retry rewrites the same items.
        self.client.put_item(TableName=self.control_table, Item=to_item(
            {"pk": _done(bucket_start, late), "sk": f"{shard:04d}", "items": len(items), "expires_at": expires}))

    @guarded
    def partial_shards(self, bucket_start: int, late: bool = False) -> frozenset[int]:
        items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": _done(bucket_start, late)}}, ConsistentRead=True)
        return frozenset(int(i["sk"]["S"]) for i in items)

    @guarded
    def partials(self, bucket_start: int, late: bool = False) -> list[OrgAggregate]:
        markers = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk",
                              ExpressionAttributeValues={":pk": {"S": _done(bucket_start, late)}}, ConsistentRead=True)
        found: list[OrgAggregate] = []
        for marker in markers:
            shard, count = int(marker["sk"]["S"]), int(marker["items"]["N"])
            pk = f"{partial_prefix(late)}#{bucket_start}#{shard:04d}"
            items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": pk}}, ConsistentRead=True)
            for item in items:
                if int(item["sk"]["S"]) < count:
                    found += partial_rows(bucket_start, item)
        return found

    @guarded
    def claim_fanout(self, bucket_start: int, now: int, every: int, late: bool = False) -> bool:
        return conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item=to_item({"pk": "latefanout" if late else "fanout", "sk": f"{bucket_start:012d}", "at": now,
                          "expires_at": bucket_start + self.retention_seconds}),
            ConditionExpression="attribute_not_exists(pk) OR #at <= :due",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues={":due": {"N": str(now - every)}},
        )

    @guarded
    def save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        if self.bucket_state(bucket_start) is not None:
            return False
        expires = bucket_start + self.retention_seconds

        # Each aggregate only if it is not there: a reducer that found the bucket unsettled may put its
        # aggregates after another settled and rolled it and a late slot ADDed stragglers into them; a plain
        # put would overwrite those additions (parity under-counted them for good). Every reducer's content
        # is identical, so one already there (a reducer killed half way) is the same aggregate.
        def put(a: OrgAggregate) -> bool:
            return conditional_write(self.client.put_item, TableName=self.control_table,
                                     Item=aggregate_to_item(a, expires), ConditionExpression="attribute_not_exists(pk)")

        count_each(put, aggregates, self.aggregate_puts_at_once)
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
