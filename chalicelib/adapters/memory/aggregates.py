"""The in-memory store's settled buckets: partials, aggregates, the bucket record (a mixin of MemoryStore)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.adapters.memory.tables import Aggregate, MemoryTables
from chalicelib.core.aggregation import BucketState, OrgAggregate

T = TypeVar("T")


def _mb_order(seconds_by_memory: dict[int, Decimal]) -> dict[int, Decimal]:
    # DynamoStore reads sizes back from "mb_<size>" attribute names in string order.
    return {mb: seconds_by_memory[mb] for mb in sorted(seconds_by_memory, key=lambda mb: f"mb_{mb}")}


class MemoryAggregates:
    tables: MemoryTables
    retention_seconds: int

    if TYPE_CHECKING:
        def _run(self, method: str, body: Callable[[], T]) -> T: ...

    def bucket_state(self, bucket_start: int) -> BucketState | None:
        def read() -> BucketState | None:
            item = self.tables.buckets.get(bucket_start)
            if item is None:
                return None
            return BucketState(bucket_start, "rolled" if item["state"] == "rolled" else "aggregated", item["orgs"])

        return self._run("bucket_state", read)

    def put_partial(self, bucket_start: int, shard: int, aggregates: list[OrgAggregate], late: bool = False) -> None:
        def put() -> None:
            self._partials(late)[(bucket_start, shard)] = list(aggregates)

        self._run("put_partial", put)

    def _partials(self, late: bool) -> dict[tuple[int, int], list[OrgAggregate]]:
        return self.tables.late_partials if late else self.tables.partials

    def partial_shards(self, bucket_start: int, late: bool = False) -> frozenset[int]:
        return self._run("partial_shards",
                         lambda: frozenset(k for b, k in self._partials(late) if b == bucket_start))

    def partials(self, bucket_start: int, late: bool = False) -> list[OrgAggregate]:
        def read() -> list[OrgAggregate]:
            keys = sorted(k for k in self._partials(late) if k[0] == bucket_start)
            return [a for k in keys for a in self._partials(late)[k]]

        return self._run("partials", read)

    def claim_fanout(self, bucket_start: int, now: int, every: int, late: bool = False) -> bool:
        def claim() -> bool:
            claims = self.tables.late_claims if late else self.tables.fanout_claims
            at = claims.get(bucket_start)
            if at is not None and at > now - every:
                return False
            claims[bucket_start] = now
            return True

        return self._run("claim_fanout", claim)

    def save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        return self._run("save_aggregates", lambda: self._save_aggregates(bucket_start, aggregates, report))

    def _save_aggregates(self, bucket_start: int, aggregates: list[OrgAggregate], report: dict[str, Any]) -> bool:
        if bucket_start in self.tables.buckets:
            return False
        for a in aggregates:  # each only if absent, as DynamoStore's: a late slot's additions are kept
            self.tables.aggregates.setdefault((bucket_start, a.org_id), Aggregate(dict(a.seconds_by_memory), a.samples))
        # What bucket_state reads back (DynamoStore's item carries the same, plus its keys and TTL).
        self.tables.buckets[bucket_start] = {"state": "aggregated", "orgs": len(aggregates),
                                             "report": json.dumps(report, sort_keys=True, default=str)}
        return True

    def aggregates(self, bucket_start: int) -> list[OrgAggregate]:
        def read() -> list[OrgAggregate]:
            found = sorted((org, agg) for (b, org), agg in self.tables.aggregates.items() if b == bucket_start)
            return [OrgAggregate(org, bucket_start, _mb_order(a.seconds_by_memory), a.samples, frozenset(a.late_slots))
                    for org, a in found]

        return self._run("aggregates", read)

    def mark_bucket_rolled(self, bucket_start: int, report: dict[str, Any]) -> bool:
        def mark() -> bool:
            item = self.tables.buckets.get(bucket_start)
            if item is None or item.get("state") != "aggregated":
                return False
            item.update(state="rolled", report=json.dumps(report, sort_keys=True, default=str))
            return True

        return self._run("mark_bucket_rolled", mark)
