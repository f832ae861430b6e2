"""Outbox rows: created once, every state change conditional."""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, conditional_update, conditional_write, guarded, to_item
from chalicelib.adapters.dynamodb.items import outbox_from_item, outbox_to_item
from chalicelib.adapters.dynamodb.parallel import OUTBOX_PUTS_AT_ONCE, count_each
from chalicelib.core.outbox import INDEXED_STATES, OutboxRow, State, queue_key, queue_keys


class OutboxRecords(Tables):
    outbox_puts_at_once = OUTBOX_PUTS_AT_ONCE  # 1: one after another (a test's deterministic order)

    @guarded
    def create_outbox_rows(self, rows: list[OutboxRow]) -> int:
        # Each row its own conditional put, several in flight; an id twice in `rows` is put once (its first
        # row), as one after another would: two puts of one id at once must not both ask DynamoDB.
        first: dict[str, OutboxRow] = {}
        for row in rows:
            first.setdefault(row.id, row)

        def put(row: OutboxRow) -> bool:
            return conditional_write(self.client.put_item, TableName=self.outbox_table, Item=outbox_to_item(row),
                                     ConditionExpression="attribute_not_exists(id)")

        return count_each(put, list(first.values()), self.outbox_puts_at_once)

    @guarded
    def outbox_queue(self, queue: str, min_bucket: int = 0, limit: int = 1000) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        for key in queue_keys(queue):  # each shard sorted by bucket_start: up to `limit` of each, then merged
            shard: list[OutboxRow] = []
            items = self._query(
                TableName=self.outbox_table,
                IndexName="queue",
                KeyConditionExpression="#q = :q AND bucket_start >= :b",
                ExpressionAttributeNames={"#q": "queue"},
                ExpressionAttributeValues={":q": {"S": key}, ":b": {"N": str(min_bucket)}},
            )
            for item in items:
                shard.append(outbox_from_item(item))
                if len(shard) >= limit:
                    break
            rows += shard
        return sorted(rows, key=lambda r: (r.bucket_start, r.id))[: max(limit, 1)]

    @guarded
    def get_outbox_row(self, row_id: str) -> OutboxRow | None:
        out = self.client.get_item(TableName=self.outbox_table, Key={"id": {"S": row_id}}, ConsistentRead=True)
        return outbox_from_item(out["Item"]) if "Item" in out else None

    @guarded
    def transition(self, row_id: str, expected: State, new: State, now: int, detail: str | None = None) -> bool:
        names = {"#s": "state", "#q": "queue", "#t": "changed_at"}
        values: dict[str, Any] = {":new": new, ":expected": expected, ":now": now}
        update = "SET #s = :new, #t = :now"
        if new in INDEXED_STATES:
            values[":queue"] = queue_key(new, row_id)
            update += ", #q = :queue"
        if new == "sent":
            names["#sa"] = "sent_at"
            update += ", #sa = :now"
        if detail is not None:
            names["#d"] = "detail"
            values[":detail"] = detail[:500]
            update += ", #d = :detail"
        if new not in INDEXED_STATES:
            update += " REMOVE #q"
        return conditional_update(
            self.client,
            TableName=self.outbox_table,
            Key={"id": {"S": row_id}},
            UpdateExpression=update,
            ConditionExpression="#s = :expected",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
