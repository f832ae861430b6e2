"""DynamoDB adapter of the store port (boto3 low-level client).

Key layout and every access pattern: docs/data-model.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, DecimalException
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.late import LateChunk, LateSignal
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import QUEUED_STATES, OutboxRow, State
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import SAMPLE_SHARDS, Sample, StoredSample
from chalicelib.ports import BillingStore, StoreRejected, StoreUnavailable

LATE_SIGNAL_KEY = {"pk": {"S": "late"}, "sk": {"S": "signal"}}
T = TypeVar("T")
P = ParamSpec("P")
_ser = TypeSerializer()
_de = TypeDeserializer()
QUARANTINE_SHARDS = 8
_BATCH_WRITE = 25
_BATCH_GET = 100
_MAX_ATTEMPTS = 8


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def sample_pk(bucket_start: int, shard: int) -> str:
    return f"s#{bucket_start}#{shard:02d}"


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def conditional_update(client: Any, **request: Any) -> bool:
    """One UpdateItem with a ConditionExpression: True if applied, False if the condition did not hold."""
    try:
        client.update_item(**request)
    except ClientError as exc:
        if is_conditional_failure(exc):
            return False
        raise
    return True


def read_org(client: Any, orgs_table: str, org_id: str) -> Org | None:
    """One org, strongly consistent (a plan decision must see the latest webhook's change)."""
    out = client.get_item(TableName=orgs_table, Key={"org_id": {"S": org_id}}, ConsistentRead=True)
    return org_from_item(out["Item"]) if "Item" in out else None


# Errors no retry can cure: the request itself is wrong (a key over DynamoDB's size limits, an
# attribute of the wrong type for a key or index, an item over 400 KB). Everything else
# (throttling, 5xx, timeouts, a conflicting transaction) may pass on retry.
PERMANENT_ERROR_CODES = frozenset({"ValidationException", "SerializationException"})


def guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn DynamoDB failures into StoreUnavailable (503: the sender retries) or, when the
    request can never succeed, StoreRejected (4xx: retrying forever would block the sender)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise
            error = exc.response.get("Error", {})
            if error.get("Code") in PERMANENT_ERROR_CODES:
                raise StoreRejected(f"{fn.__name__}: {error.get('Code')}: {error.get('Message', '')}"[:500]) from exc
            raise StoreUnavailable(f"{fn.__name__}: {error.get('Code')}") from exc
        except ParamValidationError as exc:
            # botocore's own check of the request shape (a key that is not a string, ...): permanent.
            raise StoreRejected(f"{fn.__name__}: {exc}"[:500]) from exc
        except UnicodeError as exc:
            raise StoreRejected(f"{fn.__name__}: text that is not valid UTF-8") from exc
        except DecimalException as exc:
            # boto3's serializer refuses numbers DynamoDB cannot hold (over 38 digits, beyond 1e126 or
            # below 1e-130): the request can never succeed, so 4xx, not an unhandled 500.
            raise StoreRejected(f"{fn.__name__}: a number DynamoDB cannot store") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{fn.__name__}: {exc}") from exc

    return wrapper


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * (2**attempt), 1.0))


def org_to_item(org: Org) -> dict[str, Any]:
    return to_item(
        {
            "org_id": org.org_id,
            "plan": org.plan,
            "billing_mode": org.billing_mode,
            "stripe_customer_id": org.stripe_customer_id,
            "max_memory_gb": org.max_memory_gb,
            "subscription_id": org.subscription_id,
            "subscription_item_ids": list(org.subscription_item_ids) or None,
            "credit_txn_id": org.credit_txn_id,
            "plan_changed_at": org.plan_changed_at,
            "updated_at": org.updated_at,
        }
    )


def org_from_item(item: dict[str, Any]) -> Org:
    d = from_item(item)
    return Org(
        org_id=d["org_id"],
        plan=d.get("plan", "free"),
        billing_mode=d.get("billing_mode", "legacy"),
        stripe_customer_id=d.get("stripe_customer_id"),
        max_memory_gb=int(d["max_memory_gb"]) if d.get("max_memory_gb") is not None else None,
        subscription_id=d.get("subscription_id"),
        subscription_item_ids=tuple(d.get("subscription_item_ids") or ()),
        credit_txn_id=d.get("credit_txn_id"),
        plan_changed_at=int(d.get("plan_changed_at", 0)),
        updated_at=int(d.get("updated_at", 0)),
    )


def sample_to_item(s: Sample) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pk": sample_pk(s.bucket_start, s.shard),
        "sk": s.event_id,
        "org_id": s.org_id,
        "sandbox_id": s.sandbox_id,
        "cell_id": s.cell_id,
        "worker_id": s.worker_id,
        "memory_mb": s.memory_mb,
        "cpu_count": s.cpu_count,
        "bucket": s.bucket_start,
        "start": s.start,
        "end": s.end,
        "seconds": s.seconds,
        "expires_at": s.expires_at,
    }
    if s.late:
        # Sparse index: only late samples are projected, so only they pay the index write.
        data["late_pk"] = f"late#{s.shard:02d}"
        data["late_sk"] = f"{s.bucket_start:012d}#{s.event_id}"
    return to_item(data)


def stored_sample(item: dict[str, Any]) -> StoredSample:
    d = from_item(item)
    return StoredSample(
        event_id=d["sk"],
        org_id=d["org_id"],
        memory_mb=int(d["memory_mb"]),
        bucket_start=int(d["bucket"]),
        start=Decimal(d["start"]),
        end=Decimal(d["end"]),
        seconds=Decimal(d["seconds"]),
        late="late_pk" in d,
    )


def aggregate_key(bucket_start: int, org_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"agg#{bucket_start}"}, "sk": {"S": org_id}}


def aggregate_to_item(agg: OrgAggregate, expires_at: int) -> dict[str, Any]:
    # Seconds per memory size as top-level "mb_<size>" numbers, so the late path can ADD to
    # them atomically (ADD does not reach into maps).
    data: dict[str, Any] = {
        "pk": f"agg#{agg.bucket_start}",
        "sk": agg.org_id,
        "samples": agg.samples,
        "expires_at": expires_at,
    }
    data.update({f"mb_{mb}": s for mb, s in agg.seconds_by_memory.items()})
    return to_item(data)


def aggregate_from_item(item: dict[str, Any]) -> OrgAggregate:
    d = from_item(item)
    return OrgAggregate(
        org_id=d["sk"],
        bucket_start=int(d["pk"].split("#", 1)[1]),
        seconds_by_memory={int(k[3:]): Decimal(v) for k, v in sorted(d.items()) if k.startswith("mb_")},
        samples=int(d.get("samples", 0)),
    )


class DynamoStore(BillingStore):
    def __init__(self, client: Any, table_prefix: str, retention_seconds: int) -> None:
        self.client = client
        self.samples_table = f"{table_prefix}-samples"
        self.orgs_table = f"{table_prefix}-orgs"
        self.outbox_table = f"{table_prefix}-outbox"
        self.control_table = f"{table_prefix}-control"
        self.retention_seconds = retention_seconds

    # --- batch helpers -------------------------------------------------
    def _batch_write(self, table: str, requests: list[dict[str, Any]]) -> None:
        for i in range(0, len(requests), _BATCH_WRITE):
            pending: dict[str, Any] = {table: requests[i : i + _BATCH_WRITE]}
            for attempt in range(_MAX_ATTEMPTS):
                out = self.client.batch_write_item(RequestItems=pending)
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise StoreUnavailable(f"batch write to {table}: items stayed unprocessed")

    def _batch_get(self, table: str, keys: list[dict[str, Any]], consistent: bool = False) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for i in range(0, len(keys), _BATCH_GET):
            pending: dict[str, Any] = {table: {"Keys": keys[i : i + _BATCH_GET], "ConsistentRead": consistent}}
            for attempt in range(_MAX_ATTEMPTS):
                out = self.client.batch_get_item(RequestItems=pending)
                found.extend(out.get("Responses", {}).get(table, []))
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise StoreUnavailable(f"batch get from {table}: keys stayed unprocessed")
        return found

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            out = guarded(self.client.query)(**kwargs)
            yield from out.get("Items", [])
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    # --- orgs ----------------------------------------------------------
    @guarded
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]:
        keys = [{"org_id": {"S": o}} for o in sorted(set(org_ids))]
        return {o.org_id: o for o in map(org_from_item, self._batch_get(self.orgs_table, keys))}

    @guarded
    def get_org(self, org_id: str) -> Org | None:
        return read_org(self.client, self.orgs_table, org_id)

    @guarded
    def put_org(self, org: Org) -> Org:
        self.client.put_item(TableName=self.orgs_table, Item=org_to_item(org))
        return org

    @guarded
    def update_org(self, org_id: str, fields: dict[str, Any], now: int) -> Org:
        # An UpdateItem of the named fields only: a concurrent webhook's plan change is never overwritten.
        values = {k: v for k, v in fields.items() if v is not None} | {"updated_at": now}
        names = {f"#{k}": k for k in values}
        out = self.client.update_item(
            TableName=self.orgs_table,
            Key={"org_id": {"S": org_id}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({f":{k}": v for k, v in values.items()}),
            ReturnValues="ALL_NEW",
        )
        return org_from_item(out["Attributes"])

    # --- samples -------------------------------------------------------
    @guarded
    def put_samples(self, samples: list[Sample]) -> int:
        # BatchWriteItem refuses a request naming one key twice; a batch may carry one envelope twice.
        unique = list({(s.bucket_start, s.event_id): s for s in samples}.values())
        on_time = [{"PutRequest": {"Item": sample_to_item(s)}} for s in unique if not s.late]
        self._batch_write(self.samples_table, on_time)
        if any(s.late for s in unique):
            # Before the late writes, never after: a crash between the two then costs one needless
            # sweep, while the other order could leave a late sample the rollup never looks for.
            self._bump_late_signal()
        new_late = 0
        for s in (s for s in unique if s.late):
            # A late sample may replay one the rollup already counted: only a first write may
            # enter the late path, hence the condition (cost stays proportional to stragglers).
            try:
                self.client.put_item(
                    TableName=self.samples_table,
                    Item=sample_to_item(s),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                new_late += 1
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
        return new_late

    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        # Streams page by page: the rollup's memory stays bounded by one page, not the bucket.
        for shard in range(SAMPLE_SHARDS):
            items = self._query(
                TableName=self.samples_table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": sample_pk(bucket_start, shard)}},
                ConsistentRead=True,
            )
            yield from map(stored_sample, items)

    # --- quarantine ----------------------------------------------------
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

    # --- aggregates ----------------------------------------------------
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
        try:
            self.client.put_item(
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
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

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
        try:
            self.client.update_item(
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
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- lease and cursor ----------------------------------------------
    @guarded
    def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool:
        try:
            self.client.put_item(
                TableName=self.control_table,
                Item=to_item(
                    {"pk": "lease", "sk": name, "owner": owner, "lease_until": now + seconds, "acquired_at": now}
                ),
                ConditionExpression="attribute_not_exists(pk) OR lease_until <= :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    @guarded
    def release_lease(self, name: str, owner: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.control_table,
                Key={"pk": {"S": "lease"}, "sk": {"S": name}},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    @guarded
    def cursor(self, name: str) -> int | None:
        out = self.client.get_item(
            TableName=self.control_table, Key={"pk": {"S": "cursor"}, "sk": {"S": name}}, ConsistentRead=True
        )
        return int(out["Item"]["value"]["N"]) if "Item" in out else None

    @guarded
    def advance_cursor(self, name: str, value: int) -> None:
        try:
            self.client.put_item(
                TableName=self.control_table,
                Item=to_item({"pk": "cursor", "sk": name, "value": value}),
                ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues={":v": {"N": str(value)}},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    # --- outbox ----------------------------------------------------------
    @guarded
    def create_outbox_rows(self, rows: list[OutboxRow]) -> int:
        created = 0
        for row in rows:
            try:
                self.client.put_item(
                    TableName=self.outbox_table,
                    Item=outbox_to_item(row),
                    ConditionExpression="attribute_not_exists(id)",
                )
                created += 1
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
        return created

    @guarded
    def outbox_queue(self, queue: str, min_bucket: int = 0, limit: int = 1000) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        items = self._query(
            TableName=self.outbox_table,
            IndexName="queue",
            KeyConditionExpression="#q = :q AND bucket_start >= :b",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues={":q": {"S": queue}, ":b": {"N": str(min_bucket)}},
        )
        for item in items:
            rows.append(outbox_from_item(item))
            if len(rows) >= limit:
                break
        return rows

    @guarded
    def get_outbox_row(self, row_id: str) -> OutboxRow | None:
        out = self.client.get_item(TableName=self.outbox_table, Key={"id": {"S": row_id}}, ConsistentRead=True)
        return outbox_from_item(out["Item"]) if "Item" in out else None

    @guarded
    def transition(self, row_id: str, expected: State, new: State, now: int, detail: str | None = None) -> bool:
        names = {"#s": "state", "#q": "queue", "#t": "changed_at"}
        values: dict[str, Any] = {":new": new, ":expected": expected, ":now": now}
        update = "SET #s = :new, #t = :now"
        if new in QUEUED_STATES:
            update += ", #q = :new"
        if new == "sent":
            names["#sa"] = "sent_at"
            update += ", #sa = :now"
        if detail is not None:
            names["#d"] = "detail"
            values[":detail"] = detail[:500]
            update += ", #d = :detail"
        if new not in QUEUED_STATES:
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

    # --- stragglers ------------------------------------------------------
    @guarded
    def late_samples(self, limit: int = 10_000) -> list[StoredSample]:
        found: list[StoredSample] = []
        for shard in range(SAMPLE_SHARDS):
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
        from chalicelib.core.samples import shard_of

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
                        "Key": {"pk": {"S": sample_pk(chunk.bucket_start, shard_of(event_id))}, "sk": {"S": event_id}},
                        "UpdateExpression": "REMOVE late_pk, late_sk",
                        "ConditionExpression": "attribute_exists(late_pk)",
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=actions, ClientRequestToken=delta_token(chunk))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True


def delta_token(chunk: LateChunk) -> str:
    # Idempotent for 10 minutes: a retried transact call after a lost answer is not re-applied.
    import hashlib

    return hashlib.sha256(
        "|".join([chunk.org_id, str(chunk.bucket_start), *sorted(chunk.event_ids)]).encode()
    ).hexdigest()[:36]


def outbox_to_item(row: OutboxRow) -> dict[str, Any]:
    return to_item(
        {
            "id": row.id,
            "org_id": row.org_id,
            "bucket_start": row.bucket_start,
            "bucket_end": row.bucket_end,
            "meter": row.meter,
            "value": row.value,
            "kind": row.kind,
            "state": row.state,
            "queue": row.queue,
            "samples": row.samples,
            "run_id": row.run_id or None,
            "created_at": row.created_at,
            "sent_at": row.sent_at,
            "detail": row.detail,
        }
    )


def outbox_from_item(item: dict[str, Any]) -> OutboxRow:
    d = from_item(item)
    return OutboxRow(
        id=d["id"],
        org_id=d["org_id"],
        bucket_start=int(d["bucket_start"]),
        bucket_end=int(d["bucket_end"]),
        meter=d["meter"],
        value=Decimal(d["value"]),
        kind=d["kind"],
        state=d["state"],
        samples=int(d.get("samples", 0)),
        run_id=d.get("run_id", ""),
        created_at=int(d.get("created_at", 0)),
        sent_at=int(d["sent_at"]) if d.get("sent_at") is not None else None,
        detail=d.get("detail"),
    )
