"""Envelopes kept aside, sharded by id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, from_item, guarded, to_item
from chalicelib.adapters.dynamodb.items import QUARANTINE_SHARDS
from chalicelib.core.quarantine import QuarantineItem


class QuarantineRecords(Tables):
    def _quarantine_pk(self, quarantine_id: str) -> str:
        from chalicelib.core.samples import shard_of

        return f"quarantine#{shard_of(quarantine_id) % QUARANTINE_SHARDS}"

    @guarded
    def put_quarantine(self, items: list[QuarantineItem]) -> None:
        requests = [
            {
                "PutRequest": {
                    "Item": to_item(
                        {
                            "pk": self._quarantine_pk(q.quarantine_id),
                            "sk": q.quarantine_id,
                            "kind": q.kind,
                            "reason": q.reason,
                            "cell_id": q.cell_id,
                            "raw": q.raw_json,
                            "received_at": q.received_at,
                            "raw_sha256": q.raw_sha256,
                            "raw_length": q.raw_length,
                        }
                    )
                }
            }
            for q in {q.quarantine_id: q for q in items}.values()
        ]
        self._batch_write(self.control_table, requests)

    def quarantine(self, kind: str | None = None) -> Iterator[QuarantineItem]:
        for shard in range(QUARANTINE_SHARDS):
            for d in self._quarantine_shard(shard):
                if kind is None or d["kind"] == kind:
                    yield QuarantineItem(
                        quarantine_id=d["sk"],
                        kind=d["kind"],
                        reason=d["reason"],
                        cell_id=d.get("cell_id", ""),
                        raw_json=d["raw"],
                        received_at=int(d["received_at"]),
                        raw_sha256=d.get("raw_sha256"),
                        raw_length=int(d["raw_length"]) if d.get("raw_length") is not None else None,
                    )

    @guarded
    def _quarantine_shard(self, shard: int) -> list[dict[str, Any]]:
        items = self._query(
            TableName=self.control_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"quarantine#{shard}"}},
        )
        return [from_item(i) for i in items]

    @guarded
    def delete_quarantine(self, quarantine_ids: list[str]) -> None:
        requests = [
            {"DeleteRequest": {"Key": {"pk": {"S": self._quarantine_pk(q)}, "sk": {"S": q}}}}
            for q in dict.fromkeys(quarantine_ids)
        ]
        self._batch_write(self.control_table, requests)
