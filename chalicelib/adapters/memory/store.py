"""In-memory BillingStore: the same answers as DynamoStore, for fast logic tests and fault injection.

tests/contract/test_billing_store.py runs one suite against both adapters, so
this one cannot drift from the DynamoDB one. The state lives in `MemoryTables`
(what DynamoDB holds); a `MemoryStore` is one handle on them (what one Lambda
process holds), with its own `Faults`. Two handles on the same tables are two
processes racing on the same data; a crash on one leaves the other working.

Each public method runs under the tables' one lock, so it is atomic as one
DynamoDB request (or transaction) is. Reads return what DynamoDB's queries
return, in their order: shards in order, then the sort key within a shard.
TTL is not modelled (nothing deletes on expiry).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields, replace
from decimal import Decimal
from typing import Any, TypeVar

from chalicelib.adapters.memory.aggregates import MemoryAggregates
from chalicelib.adapters.memory.faults import Faults, hooked
from chalicelib.adapters.memory.tables import Aggregate, Lease, MemoryTables
from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.late import LATE_SHARDS, LateSlot
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, State
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import SAMPLE_SHARDS, Sample, StoredSample, shard_of, unrecorded_shards
from chalicelib.ports import BillingStore, StoreUnavailable

T = TypeVar("T")
# Mirrors of DynamoStore's layout where it shows in answers (orders, the bucket item).
QUARANTINE_SHARDS = 8
DEFAULT_RETENTION_SECONDS = 45 * 86400
_ORG_FIELDS = frozenset(f.name for f in fields(Org)) - {"org_id"}


def _stored(s: Sample) -> StoredSample:
    return StoredSample(s.event_id, s.org_id, s.memory_mb, s.bucket_start, s.start, s.end, s.seconds, s.late)


def late_index_key(s: Sample) -> str:
    return f"{s.bucket_start:012d}#{s.event_id}"


def _at_least_one(items: list[T], limit: int) -> list[T]:
    # DynamoStore checks the limit after appending, so a limit below 1 still yields one item.
    return items[: max(limit, 1)]


class MemoryStore(MemoryAggregates, BillingStore):
    def __init__(
        self,
        tables: MemoryTables | None = None,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
        faults: Faults | None = None,
        sample_shards: int = SAMPLE_SHARDS,
    ) -> None:
        self.tables = tables or MemoryTables()
        self.retention_seconds = retention_seconds
        self.faults = faults or Faults(BillingStore.__abstractmethods__)
        self.sample_shards = sample_shards

    def handle(self, faults: Faults | None = None) -> MemoryStore:
        """Another handle on the same tables (a second process): shares every item, not the faults."""
        return MemoryStore(self.tables, self.retention_seconds, faults, self.sample_shards)

    def _run(self, method: str, body: Callable[[], T]) -> T:
        return hooked(self.faults, self.tables.lock, method, body)

    # --- orgs ----------------------------------------------------------
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]:
        wanted = sorted(set(org_ids))
        return self._run("get_orgs", lambda: {o: self.tables.orgs[o] for o in wanted if o in self.tables.orgs})

    def get_org(self, org_id: str) -> Org | None:
        return self._run("get_org", lambda: self.tables.orgs.get(org_id))

    def put_org(self, org: Org) -> Org:
        def put() -> Org:
            self.tables.orgs[org.org_id] = org
            return org

        return self._run("put_org", put)

    def update_org(self, org_id: str, fields: dict[str, Any], now: int) -> Org:
        def update() -> Org:
            # None means "leave as stored", as DynamoStore drops it from the SET; attributes an
            # Org does not carry are stored there and never read back, so they are dropped here.
            values = {k: v for k, v in fields.items() if v is not None and k in _ORG_FIELDS} | {"updated_at": now}
            if "subscription_item_ids" in values:
                values["subscription_item_ids"] = tuple(values["subscription_item_ids"])
            org = replace(self.tables.orgs.get(org_id) or Org(org_id), **values)
            self.tables.orgs[org_id] = org
            return org

        return self._run("update_org", update)

    # --- samples -------------------------------------------------------
    def put_samples(self, samples: list[Sample], late_slot: int | None = None) -> int:
        return self._run("put_samples", lambda: self._put_samples(samples, late_slot))

    def _put_samples(self, samples: list[Sample], late_slot: int | None) -> int:
        unique = list({(s.bucket_start, s.event_id): s for s in samples}.values())
        if any(s.late for s in unique):
            if late_slot is None:
                raise ValueError("late samples need the late slot of their arrival")
            # The slot first (as DynamoStore does): a sweep that sees a straggler always sees its slot.
            record = self.tables.late_slots.setdefault(late_slot, {"swept": False, "report": None})
            if record["swept"]:
                raise StoreUnavailable(f"late slot {late_slot} is swept already: this write came too late")
        for b in {s.bucket_start for s in unique}:
            # The first write records this process's count; later ones (another setting) keep it.
            self.tables.shard_counts.setdefault(b, self.sample_shards)
        for s in unique:
            if not s.late:
                # An unconditional put: it replaces whatever was stored under the key.
                self.tables.samples.setdefault(s.bucket_start, {})[s.event_id] = s
        new_late = 0
        for s in unique:
            bucket = self.tables.samples.setdefault(s.bucket_start, {})
            if s.late and s.event_id not in bucket:
                bucket[s.event_id] = s
                assert late_slot is not None
                index = self.tables.late_index.setdefault(late_slot, {})
                index[late_index_key(s)] = (s.bucket_start, s.event_id)
                new_late += 1
        return new_late

    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        def read() -> list[StoredSample]:
            bucket = self.tables.samples.get(bucket_start, {})
            n = self._shard_count(bucket_start)
            return [_stored(bucket[e]) for e in sorted(bucket, key=lambda e: (shard_of(e, n), e))]

        return iter(self._run("bucket_samples", read))

    def _shard_count(self, bucket_start: int) -> int:
        if bucket_start in self.tables.shard_counts:
            return self.tables.shard_counts[bucket_start]
        return unrecorded_shards(bucket_start, min(self.tables.shard_counts, default=None))

    def bucket_shard_count(self, bucket_start: int) -> int:
        return self._run("bucket_shard_count", lambda: self._shard_count(bucket_start))

    def shard_samples(self, bucket_start: int, shard: int) -> Iterator[StoredSample]:
        def read() -> list[StoredSample]:
            bucket = self.tables.samples.get(bucket_start, {})
            n = self._shard_count(bucket_start)
            return [_stored(bucket[e]) for e in sorted(bucket) if shard_of(e, n) == shard]

        return iter(self._run("shard_samples", read))

    # --- quarantine ----------------------------------------------------
    def put_quarantine(self, items: list[QuarantineItem]) -> None:
        def put() -> None:
            self.tables.quarantine.update({q.quarantine_id: q for q in items})

        self._run("put_quarantine", put)

    def quarantine(self, kind: str | None = None) -> Iterator[QuarantineItem]:
        def read() -> list[QuarantineItem]:
            ids = sorted(self.tables.quarantine, key=lambda q: (shard_of(q) % QUARANTINE_SHARDS, q))
            items = [self.tables.quarantine[q] for q in ids]
            return [q for q in items if kind is None or q.kind == kind]

        return iter(self._run("quarantine", read))

    def delete_quarantine(self, quarantine_ids: list[str]) -> None:
        def delete() -> None:
            for q in quarantine_ids:
                self.tables.quarantine.pop(q, None)

        self._run("delete_quarantine", delete)

    # --- lease and cursor ----------------------------------------------
    def acquire_lease(self, name: str, owner: str, now: int, seconds: int) -> bool:
        def acquire() -> bool:
            lease = self.tables.leases.get(name)
            # Like the DynamoDB condition, the holder itself cannot renew before expiry.
            if lease is not None and lease.until > now:
                return False
            self.tables.leases[name] = Lease(owner, now + seconds)
            return True

        return self._run("acquire_lease", acquire)

    def release_lease(self, name: str, owner: str) -> None:
        def release() -> None:
            lease = self.tables.leases.get(name)
            if lease is not None and lease.owner == owner:
                del self.tables.leases[name]

        self._run("release_lease", release)

    def cursor(self, name: str) -> int | None:
        return self._run("cursor", lambda: self.tables.cursors.get(name))

    def advance_cursor(self, name: str, value: int) -> None:
        def advance() -> None:
            current = self.tables.cursors.get(name)
            if current is None or current < value:
                self.tables.cursors[name] = value

        self._run("advance_cursor", advance)

    # --- outbox ----------------------------------------------------------
    def create_outbox_rows(self, rows: list[OutboxRow]) -> int:
        def create() -> int:
            created = 0
            for row in rows:
                if row.id not in self.tables.outbox:
                    self.tables.outbox[row.id] = row
                    created += 1
            return created

        return self._run("create_outbox_rows", create)

    def outbox_queue(self, queue: str, min_bucket: int = 0, limit: int = 1000) -> list[OutboxRow]:
        def read() -> list[OutboxRow]:
            queued = [r for r in self.tables.outbox.values() if r.queue == queue and r.bucket_start >= min_bucket]
            # The index sorts by bucket_start only; ties are ordered by id here to stay deterministic.
            return _at_least_one(sorted(queued, key=lambda r: (r.bucket_start, r.id)), limit)

        return self._run("outbox_queue", read)

    def get_outbox_row(self, row_id: str) -> OutboxRow | None:
        return self._run("get_outbox_row", lambda: self.tables.outbox.get(row_id))

    def transition(self, row_id: str, expected: State, new: State, now: int, detail: str | None = None) -> bool:
        def move() -> bool:
            row = self.tables.outbox.get(row_id)
            if row is None or row.state != expected:
                return False
            row = replace(row, state=new)
            if new == "sent":
                row = replace(row, sent_at=now)
            if detail is not None:
                row = replace(row, detail=detail[:500])
            self.tables.outbox[row_id] = row
            return True

        return self._run("transition", move)

    # --- stragglers ------------------------------------------------------
    def late_slots(self, since: int) -> list[LateSlot]:
        def read() -> list[LateSlot]:
            found = sorted((slot, r) for slot, r in self.tables.late_slots.items() if slot >= since)
            return [LateSlot(slot, r["swept"]) for slot, r in found]

        return self._run("late_slots", read)

    def late_slot(self, slot: int) -> LateSlot | None:
        def read() -> LateSlot | None:
            record = self.tables.late_slots.get(slot)
            return None if record is None else LateSlot(slot, record["swept"])

        return self._run("late_slot", read)

    def _index(self, slot: int, shard: int, first_bucket: int = 0,
               last_bucket: int | None = None) -> list[StoredSample]:
        index = self.tables.late_index.get(slot, {})
        # One index partition per (slot, shard), sorted by "<bucket:012d>#<event id>", as DynamoStore's GSI.
        keys = sorted(k for k, (b, e) in index.items() if shard_of(e, LATE_SHARDS) == shard
                      and first_bucket <= b and (last_bucket is None or b <= last_bucket))
        return [_stored(self.tables.samples[index[k][0]][index[k][1]]) for k in keys]

    def late_slot_samples(self, slot: int, shard: int) -> Iterator[StoredSample]:
        return iter(self._run("late_slot_samples", lambda: self._index(slot, shard)))

    def unswept_late(self, first_bucket: int, last_bucket: int, since: int) -> list[tuple[int, StoredSample]]:
        def read() -> list[tuple[int, StoredSample]]:
            slots = sorted(s for s, r in self.tables.late_slots.items() if s >= since and not r["swept"])
            return [(slot, s) for slot in slots for k in range(LATE_SHARDS)
                    for s in self._index(slot, k, first_bucket, last_bucket)]

        return self._run("unswept_late", read)

    def apply_late(self, slot: int, aggregates: list[OrgAggregate]) -> int:
        def apply() -> int:
            added = 0
            for a in aggregates:
                agg = self.tables.aggregates.setdefault((a.bucket_start, a.org_id), Aggregate({}, 0))
                if slot in agg.late_slots:
                    continue  # this slot was added already (a retry, or another reducer)
                for mb, seconds in a.seconds_by_memory.items():
                    agg.seconds_by_memory[mb] = agg.seconds_by_memory.get(mb, Decimal(0)) + seconds
                agg.samples += a.samples
                agg.late_slots.add(slot)
                added += 1
            return added

        return self._run("apply_late", apply)

    def mark_late_swept(self, slot: int, report: dict[str, Any]) -> bool:
        def mark() -> bool:
            record = self.tables.late_slots.get(slot)
            if record is None or record["swept"]:
                return False
            record.update(swept=True, report=json.dumps(report, sort_keys=True, default=str))
            return True

        return self._run("mark_late_swept", mark)
