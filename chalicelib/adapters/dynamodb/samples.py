"""Samples, and stragglers by late slot: the slot records, the late index, the slot's once-only additions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, conditional_write, guarded, to_item
from chalicelib.adapters.dynamodb.items import (
    aggregate_key,
    bucket_shards_key,
    late_sk,
    late_slot_key,
    sample_pk,
    sample_to_item,
    stored_sample,
)
from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.late import LATE_SHARDS, LateSlot
from chalicelib.core.samples import Sample, StoredSample, unrecorded_shards
from chalicelib.ports import StoreUnavailable

# Buckets whose shard count a process remembers (a count never changes once recorded).
_REMEMBERED_BUCKETS = 256


class SampleRecords(Tables):
    @guarded
    def put_samples(self, samples: list[Sample], late_slot: int | None = None) -> int:
        # BatchWriteItem refuses a request naming one key twice; a batch may carry one envelope twice.
        unique = list({(s.bucket_start, s.event_id): s for s in samples}.values())
        shards = {b: self._shards_for_write(b) for b in sorted({s.bucket_start for s in unique})}
        on_time = [{"PutRequest": {"Item": sample_to_item(s, shards[s.bucket_start])}} for s in unique if not s.late]
        self._batch_write(self.samples_table, on_time)
        late = [s for s in unique if s.late]
        if late:
            if late_slot is None:
                raise ValueError("late samples need the late slot of their arrival")
            # The slot before its stragglers, never after: a sweep that finds a straggler always finds its
            # slot. Refused once the slot is swept (a write that outlived the margin): the cell retries later.
            if not self._open_slot(late_slot, min(s.bucket_start for s in late)):
                raise StoreUnavailable(f"late slot {late_slot} is swept already: this write came too late")
        new_late = 0
        for s in late:
            # A late sample may replay one the rollup already counted: only a first write may
            # enter the late path, hence the condition (cost stays proportional to stragglers).
            new_late += conditional_write(
                self.client.put_item,
                TableName=self.samples_table,
                Item=sample_to_item(s, shards[s.bucket_start], late_slot),
                ConditionExpression="attribute_not_exists(pk)",
            )
        return new_late

    def _open_slot(self, slot: int, first_bucket: int) -> bool:
        return self._slot_update(slot, "SET swept = if_not_exists(swept, :f), #e = if_not_exists(#e, :e)",
                                 "attribute_not_exists(swept) OR swept = :f", {"#e": "expires_at"},
                                 {":e": {"N": str(first_bucket + self.retention_seconds)}})

    def _slot_update(self, slot: int, update: str, condition: str, names: dict[str, str],
                     values: dict[str, Any]) -> bool:
        """A conditional update of the slot's record while it is not swept (ingest's open, the sweep's mark)."""
        return conditional_write(self.client.update_item, TableName=self.control_table, Key=late_slot_key(slot),
                                 UpdateExpression=update, ConditionExpression=condition, ExpressionAttributeNames=names,
                                 ExpressionAttributeValues={":f": {"BOOL": False}} | values)

    def _shards_for_write(self, bucket_start: int) -> int:
        """The bucket's shard count: this process's setting if it writes the bucket's first record, else
        the recorded one (two deployments' settings during a change agree on every bucket)."""
        if bucket_start in self._bucket_shards:
            return self._bucket_shards[bucket_start]
        if not conditional_write(
            self.client.put_item,
            TableName=self.control_table,
            Item={**bucket_shards_key(bucket_start), "count": {"N": str(self.sample_shards)},
                  "expires_at": {"N": str(bucket_start + self.retention_seconds)}},
            ConditionExpression="attribute_not_exists(pk)",
        ):
            return self.bucket_shard_count(bucket_start)
        return self._remember(bucket_start, self.sample_shards)

    def _read_first(self) -> int | None:
        """The earliest bucket with a recorded count: the first of the "shards" partition's sort keys (a
        record is written before its bucket's first sample, so every later bucket with samples has one)."""
        out = self.client.query(TableName=self.control_table, KeyConditionExpression="pk = :pk", Limit=1,
                                ExpressionAttributeValues={":pk": {"S": "shards"}}, ConsistentRead=True)
        items = out.get("Items", [])
        return int(items[0]["sk"]["S"]) if items else None

    def _remember(self, bucket_start: int, count: int) -> int:
        if len(self._bucket_shards) >= _REMEMBERED_BUCKETS:
            self._bucket_shards.clear()
        self._bucket_shards[bucket_start] = count
        return count

    @guarded
    def bucket_shard_count(self, bucket_start: int) -> int:
        if bucket_start in self._bucket_shards:
            return self._bucket_shards[bucket_start]
        out = self.client.get_item(TableName=self.control_table, Key=bucket_shards_key(bucket_start),
                                   ConsistentRead=True)
        if "Item" in out:
            return self._remember(bucket_start, int(out["Item"]["count"]["N"]))
        return unrecorded_shards(bucket_start, self._read_first())

    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        for shard in range(self.bucket_shard_count(bucket_start)):
            yield from self.shard_samples(bucket_start, shard)

    def shard_samples(self, bucket_start: int, shard: int) -> Iterator[StoredSample]:
        # Streams page by page: a worker's memory stays bounded by one page, not the shard.
        items = self._query(
            TableName=self.samples_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": sample_pk(bucket_start, shard)}},
            ConsistentRead=True,
        )
        yield from map(stored_sample, items)

    @guarded
    def late_slots(self, since: int) -> list[LateSlot]:
        items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk AND sk >= :since",
                            ExpressionAttributeValues={":pk": {"S": "lateslot"}, ":since": {"S": f"{since:012d}"}},
                            ConsistentRead=True)
        return [LateSlot(int(i["sk"]["S"]), bool(i.get("swept", {}).get("BOOL"))) for i in items]

    @guarded
    def late_slot(self, slot: int) -> LateSlot | None:
        out = self.client.get_item(TableName=self.control_table, Key=late_slot_key(slot), ConsistentRead=True)
        return LateSlot(slot, bool(out["Item"].get("swept", {}).get("BOOL"))) if "Item" in out else None

    def late_slot_samples(self, slot: int, shard: int) -> Iterator[StoredSample]:
        return self._late_index(slot, shard)

    def _late_index(self, slot: int, shard: int, first_bucket: int = 0,
                    last_bucket: int | None = None) -> Iterator[StoredSample]:
        hi = late_sk(last_bucket + 1, "") if last_bucket is not None else "~"
        items = self._query(
            TableName=self.samples_table,
            IndexName="late",
            KeyConditionExpression="late_pk = :p AND late_sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": {"S": f"late#{slot}#{shard:02d}"}, ":lo": {"S": late_sk(first_bucket, "")},
                                       ":hi": {"S": hi}},
        )
        yield from map(stored_sample, items)

    @guarded
    def unswept_late(self, first_bucket: int, last_bucket: int, since: int) -> list[tuple[int, StoredSample]]:
        return [(s.slot, sample) for s in self.late_slots(since) if not s.swept for k in range(LATE_SHARDS)
                for sample in self._late_index(s.slot, k, first_bucket, last_bucket)]

    @guarded
    def apply_late(self, slot: int, aggregates: list[OrgAggregate]) -> int:
        added = 0
        for a in aggregates:
            adds = {f"mb_{mb}": s for mb, s in a.seconds_by_memory.items()}
            names = {f"#a{i}": k for i, k in enumerate(adds)} | {"#n": "samples", "#e": "expires_at",
                                                                 "#l": "late_slots"}
            values = to_item({f":a{i}": v for i, v in enumerate(adds.values())}
                             | {":n": a.samples, ":e": a.bucket_start + self.retention_seconds, ":slot": slot})
            values[":slots"] = {"NS": [str(slot)]}
            add_expr = ", ".join([f"#a{i} :a{i}" for i in range(len(adds))] + ["#n :n", "#l :slots"])
            # Once per slot: the slot joins the aggregate's set in the same write that adds its seconds.
            added += conditional_write(
                self.client.update_item,
                TableName=self.control_table,
                Key=aggregate_key(a.bucket_start, a.org_id),
                UpdateExpression=f"ADD {add_expr} SET #e = if_not_exists(#e, :e)",
                ConditionExpression="attribute_not_exists(#l) OR NOT contains(#l, :slot)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return added

    @guarded
    def mark_late_swept(self, slot: int, report: dict[str, Any]) -> bool:
        return self._slot_update(slot, "SET swept = :t, #r = :r", "swept = :f", {"#r": "report"},
                                 {":t": {"BOOL": True}, ":r": {"S": json.dumps(report, sort_keys=True, default=str)}})
