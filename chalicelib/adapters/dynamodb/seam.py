"""DynamoDB reads for the cutover seam: outbox rows by bucket, and which cells an org's samples came from.

Sent rows leave the `queue` index, so the outbox's keys-only `by_bucket`
index (hash `bucket_start`, range `id`) finds every row of a bucket, whatever
its state; the rows themselves are then read by key. Operator-time only (the
cutover CLI), a handful of buckets around T; and the oldest pending row, one
item read after each scheduled rollup (the outbox age metric).
"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.dynamodb.common import guarded
from chalicelib.adapters.dynamodb.items import outbox_from_item, sample_pk
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.core.outbox import OutboxRow, queue_keys


class DynamoSeam:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store
        self.client: Any = store.client

    def _pages(self, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            out = self.client.query(**request)
            items.extend(out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                return items
            request["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    @guarded
    def bucket_rows(self, bucket_starts: list[int]) -> list[OutboxRow]:
        """Every outbox row (first emissions and straggler deltas, any state) of these buckets."""
        keys: list[dict[str, Any]] = []
        for b in bucket_starts:
            keys += [
                {"id": item["id"]}
                for item in self._pages(
                    TableName=self.store.outbox_table,
                    IndexName="by_bucket",
                    KeyConditionExpression="bucket_start = :b",
                    ExpressionAttributeValues={":b": {"N": str(b)}},
                )
            ]
        # The index lags its table a little; the rows themselves are read strongly consistent.
        items = self.store._batch_get(self.store.outbox_table, keys, consistent=True)
        return sorted((outbox_from_item(i) for i in items), key=lambda r: (r.bucket_start, r.id))

    @guarded
    def org_cells(self, bucket_start: int, org_ids: set[str]) -> dict[tuple[str, int], frozenset[str]]:
        """For each org, the cells its samples in this bucket came from."""
        found: dict[str, set[str]] = {}
        for shard in range(self.store.bucket_shard_count(bucket_start)):
            for item in self._pages(
                TableName=self.store.samples_table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": sample_pk(bucket_start, shard)}},
                ProjectionExpression="org_id, cell_id",
            ):
                org = item["org_id"]["S"]
                if org in org_ids:
                    found.setdefault(org, set()).add(item.get("cell_id", {}).get("S", ""))
        return {(org, bucket_start): frozenset(cells) for org, cells in found.items()}

    @guarded
    def oldest_pending_bucket_end(self) -> int | None:
        """bucket_end of the oldest pending row (the `queue` index sorts each shard by bucket_start), or None."""
        ends = []
        for key in queue_keys("pending"):
            out = self.client.query(
                TableName=self.store.outbox_table,
                IndexName="queue",
                KeyConditionExpression="#q = :q",
                ExpressionAttributeNames={"#q": "queue"},
                ExpressionAttributeValues={":q": {"S": key}},
                Limit=1,
            )
            ends += [int(item["bucket_end"]["N"]) for item in out.get("Items", [])]
        return min(ends, default=None)
