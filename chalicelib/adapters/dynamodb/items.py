"""Item mappers: domain records <-> DynamoDB items, and the key layout (docs/data-model.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib.adapters.dynamodb.common import from_item, to_item
from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.late import LATE_SHARDS
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, queue_key
from chalicelib.core.samples import Sample, StoredSample, shard_of

QUARANTINE_SHARDS = 8


def sample_pk(bucket_start: int, shard: int) -> str:
    return f"s#{bucket_start}#{shard:02d}"


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


def bucket_shards_key(bucket_start: int) -> dict[str, Any]:
    return {"pk": {"S": "shards"}, "sk": {"S": f"{bucket_start:012d}"}}


def late_pk(slot: int, event_id: str) -> str:
    """The late index's partition of a straggler: its slot, and one of LATE_SHARDS within it."""
    return f"late#{slot}#{shard_of(event_id, LATE_SHARDS):02d}"


def late_slot_key(slot: int) -> dict[str, Any]:
    return {"pk": {"S": "lateslot"}, "sk": {"S": f"{slot:012d}"}}


def late_sk(bucket_start: int, event_id: str) -> str:
    return f"{bucket_start:012d}#{event_id}"


def sample_to_item(s: Sample, shards: int, late_slot: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pk": sample_pk(s.bucket_start, shard_of(s.event_id, shards)),
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
    if s.late and late_slot is not None:
        # Sparse index: only late samples are projected, so only they pay the index write.
        data["late_pk"] = late_pk(late_slot, s.event_id)
        data["late_sk"] = late_sk(s.bucket_start, s.event_id)
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


def partial_prefix(late: bool) -> str:
    return "latepart" if late else "part"


def partial_to_items(bucket_start: int, shard: int, aggs: list[OrgAggregate], expires_at: int,
                     per_item: int, late: bool = False) -> list[dict[str, Any]]:
    """A shard's partial as items of at most `per_item` orgs each (an item holds 400 KB), always the same
    items for the same partial: a second write of it puts identical items."""
    import json

    # A late slot's partial spans buckets: each row then names its own.
    rows = [[a.org_id, {str(mb): str(s) for mb, s in a.seconds_by_memory.items()}, a.samples]
            + ([a.bucket_start] if late else []) for a in aggs]
    return [
        to_item({"pk": f"{partial_prefix(late)}#{bucket_start}#{shard:04d}", "sk": f"{i // per_item:05d}",
                 "rows": json.dumps(rows[i : i + per_item], separators=(",", ":")), "expires_at": expires_at})
        for i in range(0, len(rows), per_item)
    ]


def partial_rows(bucket_start: int, item: dict[str, Any]) -> list[OrgAggregate]:
    import json

    return [
        OrgAggregate(org, int(rest[0]) if rest else bucket_start, {int(mb): Decimal(s) for mb, s in by_mb.items()},
                     int(n))
        for org, by_mb, n, *rest in json.loads(item["rows"]["S"])
    ]


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
        late_slots=frozenset(int(x) for x in d.get("late_slots", ())),
    )


def transaction_token(actions: list[dict[str, Any]]) -> str:
    """A ClientRequestToken that is a digest of the whole request.

    DynamoDB answers a repeat of a token within 10 minutes without applying it again only if the
    parameters are identical, and fails with IdempotentParameterMismatchException otherwise. Hashing
    what is asked gives both halves: a retry after a lost answer is the same request (not re-applied),
    and a racing or later run's commit of the same stragglers (another run id, another time) is a
    different request, refused by its conditions as a cancelled transaction rather than a mismatch."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(actions, sort_keys=True).encode()).hexdigest()[:36]


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
            "queue": queue_key(row.queue, row.id) if row.queue else None,
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


def read_org(client: Any, orgs_table: str, org_id: str) -> Org | None:
    """One org, strongly consistent (a plan decision must see the latest webhook's change)."""
    out = client.get_item(TableName=orgs_table, Key={"org_id": {"S": org_id}}, ConsistentRead=True)
    return org_from_item(out["Item"]) if "Item" in out else None
