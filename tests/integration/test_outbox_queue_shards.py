"""The outbox's `queue` index spread over shards on DynamoDB (moto): every row found, in bucket order,
rows written before the shards (a bare "pending" key) too; each state change moves the row's key."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib.adapters.dynamodb.items import outbox_to_item
from chalicelib.adapters.dynamodb.seam import DynamoSeam
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.core.outbox import QUEUE_SHARDS, OutboxRow, queue_key

T0 = 1_795_564_800


def row(n: int, bucket: int) -> OutboxRow:
    return OutboxRow(f"org{n}:{bucket}:m", f"org{n}", bucket, bucket + 3600, "m", Decimal("1.5"), "first", "pending")


def keys(store: DynamoStore) -> dict[str, str]:
    items = store.client.scan(TableName=store.outbox_table)["Items"]
    return {i["id"]["S"]: i.get("queue", {}).get("S", "") for i in items}


def test_rows_spread_over_the_shards_and_come_back_in_bucket_order(store: DynamoStore) -> None:
    rows = [row(n, T0 + (n % 3) * 3600) for n in range(40)]
    store.create_outbox_rows(rows)
    stored = keys(store)
    assert {k.split("#")[0] for k in stored.values()} == {"pending"}
    assert len(set(stored.values())) >= QUEUE_SHARDS // 2, "spread, not one hot key"
    assert all(stored[r.id] == queue_key("pending", r.id) for r in rows), "fixed by the row's id"
    want = sorted(rows, key=lambda r: (r.bucket_start, r.id))
    assert [r.id for r in store.outbox_queue("pending")] == [r.id for r in want]
    assert [r.id for r in store.outbox_queue("pending", limit=5)] == [r.id for r in want[:5]]
    assert [r.id for r in store.outbox_queue("pending", min_bucket=T0 + 7200)] == [
        r.id for r in want if r.bucket_start >= T0 + 7200]
    assert DynamoSeam(store).oldest_pending_bucket_end() == T0 + 3600


def test_a_row_written_before_the_shards_is_found_and_moves_to_a_shard(store: DynamoStore) -> None:
    legacy = row(99, T0 - 3600)
    item: dict[str, Any] = outbox_to_item(legacy) | {"queue": {"S": "pending"}}
    store.client.put_item(TableName=store.outbox_table, Item=item)
    store.create_outbox_rows([row(1, T0)])
    assert [r.id for r in store.outbox_queue("pending")] == [legacy.id, row(1, T0).id]
    assert DynamoSeam(store).oldest_pending_bucket_end() == T0
    assert store.transition(legacy.id, "pending", "failed", T0, detail="rejected")
    assert keys(store)[legacy.id] == queue_key("failed", legacy.id)
    assert [r.id for r in store.outbox_queue("failed")] == [legacy.id]
    assert store.transition(legacy.id, "failed", "pending", T0)
    assert store.transition(legacy.id, "pending", "sent", T0)
    assert keys(store)[legacy.id] == "", "sent rows leave the index"
    assert [r.id for r in store.outbox_queue("pending")] == [row(1, T0).id]
