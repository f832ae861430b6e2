"""Samples, the late flag and signal, and the atomic late commit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chalicelib.adapters.dynamodb.common import (
    Tables,
    conditional_transaction,
    conditional_write,
    from_item,
    guarded,
    to_item,
)
from chalicelib.adapters.dynamodb.items import (
    LATE_SIGNAL_KEY,
    aggregate_key,
    bucket_shards_key,
    late_sk,
    outbox_to_item,
    sample_pk,
    sample_to_item,
    stored_sample,
    transaction_token,
)
from chalicelib.core.late import LateChunk, LateSignal
from chalicelib.core.samples import LATE_SHARDS, Sample, StoredSample, shard_of, unrecorded_shards

# Buckets whose shard count a process remembers (a count never changes once recorded).
_REMEMBERED_BUCKETS = 256


class SampleRecords(Tables):
    @guarded
    def put_samples(self, samples: list[Sample]) -> int:
        # BatchWriteItem refuses a request naming one key twice; a batch may carry one envelope twice.
        unique = list({(s.bucket_start, s.event_id): s for s in samples}.values())
        shards = {b: self._shards_for_write(b) for b in sorted({s.bucket_start for s in unique})}
        on_time = [{"PutRequest": {"Item": sample_to_item(s, shards[s.bucket_start])}} for s in unique if not s.late]
        self._batch_write(self.samples_table, on_time)
        if any(s.late for s in unique):
            # Before the late writes, never after: a crash between the two then costs one needless
            # sweep, while the other order could leave a late sample the rollup never looks for.
            self._bump_late_signal()
        new_late = 0
        for s in (s for s in unique if s.late):
            # A late sample may replay one the rollup already counted: only a first write may
            # enter the late path, hence the condition (cost stays proportional to stragglers).
            new_late += conditional_write(
                self.client.put_item,
                TableName=self.samples_table,
                Item=sample_to_item(s, shards[s.bucket_start]),
                ConditionExpression="attribute_not_exists(pk)",
            )
        return new_late

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
    def late_samples_between(self, first_bucket: int, last_bucket: int) -> list[StoredSample]:
        found: list[StoredSample] = []
        for shard in range(LATE_SHARDS):
            found += map(stored_sample, self._query(
                TableName=self.samples_table,
                IndexName="late",
                KeyConditionExpression="late_pk = :p AND late_sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":p": {"S": f"late#{shard:02d}"}, ":lo": {"S": late_sk(first_bucket, "")},
                                           ":hi": {"S": late_sk(last_bucket + 1, "")}},
            ))
        return found

    @guarded
    def late_samples(self, limit: int = 10_000) -> list[StoredSample]:
        found: list[StoredSample] = []
        for shard in range(LATE_SHARDS):
            items = self._query(
                TableName=self.samples_table,
                IndexName="late",
                KeyConditionExpression="late_pk = :p",
                ExpressionAttributeValues={":p": {"S": f"late#{shard:02d}"}},
            )
            for item in items:
                found.append(stored_sample(item))
                if len(found) >= limit:
                    return found
        return found

    def _bump_late_signal(self) -> None:
        self.client.update_item(
            TableName=self.control_table,
            Key=LATE_SIGNAL_KEY,
            UpdateExpression="ADD #v :one",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    @guarded
    def late_signal(self) -> LateSignal:
        out = self.client.get_item(TableName=self.control_table, Key=LATE_SIGNAL_KEY, ConsistentRead=True)
        d = from_item(out.get("Item", {}))
        return LateSignal(
            version=int(d.get("version", 0)),
            seen_version=int(d["seen_version"]) if "seen_version" in d else None,
            seen_at=int(d.get("seen_at", 0)),
            swept_version=int(d["swept_version"]) if "swept_version" in d else None,
            swept_at=int(d.get("swept_at", 0)),
        )

    @guarded
    def save_late_sweep(self, signal: LateSignal) -> None:
        fields = {
            "seen_version": signal.seen_version,
            "seen_at": signal.seen_at,
            "swept_version": signal.swept_version,
            "swept_at": signal.swept_at,
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        self.client.update_item(
            TableName=self.control_table,
            Key=LATE_SIGNAL_KEY,
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields),
            ExpressionAttributeNames={f"#{k}": k for k in fields},
            ExpressionAttributeValues=to_item({f":{k}": v for k, v in fields.items()}),
        )

    @guarded
    def commit_late_chunk(self, chunk: LateChunk, now: int) -> bool:
        shards = self.bucket_shard_count(chunk.bucket_start)
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.outbox_table,
                    "Item": outbox_to_item(r),
                    "ConditionExpression": "attribute_not_exists(id)",
                }
            }
            for r in chunk.rows
        ]
        adds = {f"mb_{mb}": s for mb, s in chunk.seconds_by_memory.items()}
        names = {f"#a{i}": k for i, k in enumerate(adds)} | {"#n": "samples", "#e": "expires_at"}
        values = {f":a{i}": v for i, v in enumerate(adds.values())} | {
            ":n": len(chunk.event_ids),
            ":e": chunk.bucket_start + self.retention_seconds,
        }
        add_expr = ", ".join([f"#a{i} :a{i}" for i in range(len(adds))] + ["#n :n"])
        actions.append(
            {
                "Update": {
                    "TableName": self.control_table,
                    "Key": aggregate_key(chunk.bucket_start, chunk.org_id),
                    "UpdateExpression": f"ADD {add_expr} SET #e = :e",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": to_item(values),
                }
            }
        )
        for event_id in chunk.event_ids:
            actions.append(
                {
                    "Update": {
                        "TableName": self.samples_table,
                        "Key": {"pk": {"S": sample_pk(chunk.bucket_start, shard_of(event_id, shards))},
                                "sk": {"S": event_id}},
                        "UpdateExpression": "REMOVE late_pk, late_sk",
                        "ConditionExpression": "attribute_exists(late_pk)",
                    }
                }
            )
        return conditional_transaction(self.client, actions, transaction_token(actions))
