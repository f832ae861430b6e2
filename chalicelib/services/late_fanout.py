"""Stragglers fanned out like the buckets: a closed late slot's stragglers become delta rows, exactly once.

- The COORDINATOR (the schedule's run, `walk_late`) walks the slots with stragglers from the late cursor;
  a closed slot not swept yet is reduced if it can be, else its tasks are enqueued (one per late shard
  whose partial is missing, `claim_fanout` once per FANOUT_RETRY_SECONDS, as for buckets).
- A WORKER reads its one index partition of the slot and stores the shard's partial: per (bucket, org,
  memory size) seconds and samples, deterministic, so a duplicate or a retry writes the same items.
- The REDUCER (whichever worker or coordinator finds every partial present) waits until every bucket the
  slot touches is rolled (a bucket's first emission comes first), then: delta rows named by (org, bucket,
  meter, slot) (`attribute_not_exists`), each (bucket, org) aggregate added once per slot (the slot joins
  the aggregate's applied set in the same conditional write), and the mark `open -> swept`. A crash
  anywhere re-runs the same steps; two reducers write the same rows and additions, one mark wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.core.aggregation import aggregate_late, combine_by_bucket
from chalicelib.core.fanout import ShardTask, TaskError, Walk, missing_shards, tasks_for
from chalicelib.core.late import LATE_SHARDS, slot_closed
from chalicelib.core.metering import plan_late_slot
from chalicelib.observability import logger
from chalicelib.ports import AggregateStore, LateStore, OrgStore, OutboxStore, RunControl, TaskQueue
from chalicelib.settings import Settings

CURSOR = "late"


class LateFanoutStore(OrgStore, OutboxStore, AggregateStore, LateStore, Protocol):
    """The billing store's roles a late worker and the late reducer use: the slot, its index partition and
    partials, the buckets' marks, the orgs' billing modes, the delta rows, the aggregates' additions."""


class LateWalkStore(LateFanoutStore, RunControl, Protocol):
    """The coordinator's: the reducer's roles and the late cursor."""


def reduce_late(store: LateFanoutStore, settings: Settings, slot: int, run_id: str, now: int) -> dict[str, Any] | None:
    """Bill the slot from its partials once every one is present and its buckets are rolled; None if it is
    not the caller's to bill (a partial missing, a bucket not rolled, swept already, or another won the mark)."""
    state = store.late_slot(slot)
    if state is None or state.swept or missing_shards(LATE_SHARDS, store.partial_shards(slot, late=True)):
        return None
    aggs = combine_by_bucket(store.partials(slot, late=True))
    for b in sorted({a.bucket_start for a in aggs}):
        bucket = store.bucket_state(b)
        if bucket is None or not bucket.rolled:
            return None  # its first emission first: the slot waits for the bucket's rollup
    plan = plan_late_slot(slot, aggs, store.get_orgs({a.org_id for a in aggs}), settings, run_id, now)
    created = store.create_outbox_rows(plan.rows)
    store.apply_late(slot, aggs)
    report = {"run_id": run_id, "samples": sum(a.samples for a in aggs), "rows": len(plan.rows),
              "unknown": plan.unknown}
    if not store.mark_late_swept(slot, report):
        return None
    for u in plan.unknown:
        logger.error("usage_not_billed", extra={"run_id": run_id, **u})
    logger.info("late_slot_billed", extra={"slot": slot, **report})
    return report | {"created": created}


def handle_late_task(store: LateFanoutStore, settings: Settings, task: ShardTask, run_id: str,
                     now: int, reduce: bool = True) -> dict[str, Any] | None:
    """A worker's one late task: its index partition's partial, then the reduce if it was the last one
    (`reduce` False: a later task of the same slot in the worker's batch reduces after it)."""
    slot = task.bucket_start
    state = store.late_slot(slot)
    if state is None:
        raise TaskError(f"no late slot {slot}")
    if state.swept:
        return None
    # Written without asking first whether it is there (a read per task): deterministic content, as a bucket's.
    store.put_partial(slot, task.shard, aggregate_late(store.late_slot_samples(slot, task.shard)), late=True)
    return reduce_late(store, settings, slot, run_id, now) if reduce else None


def enqueue_late(store: LateFanoutStore, queue: TaskQueue, settings: Settings, slot: int, now: int,
                 claim: bool = True) -> int:
    if claim and not store.claim_fanout(slot, now, settings.FANOUT_RETRY_SECONDS, late=True):
        return 0
    tasks = tasks_for(slot, LATE_SHARDS, store.partial_shards(slot, late=True), late=True)
    queue.send([t.body() for t in tasks])
    return len(tasks)


@dataclass
class LateWalk(Walk):
    open: int = 0  # slots with stragglers still filling (not closed yet)

    def body(self) -> dict[str, Any]:
        unknown = [u | {"slot": s} for s, r in sorted(self.reports.items()) for u in r["unknown"]]
        return {"slots": sorted(self.reports), "samples": sum(r["samples"] for r in self.reports.values()),
                "rows": sum(r["created"] for r in self.reports.values()), "unbilled": unknown,
                "waiting": len(self.waiting), "tasks": self.enqueued, "open": self.open}


def walk_late(store: LateWalkStore, settings: Settings, run_id: str, now: int, queue: TaskQueue,
              claim: bool) -> LateWalk:
    """Every slot with stragglers from the cursor: billed, or its tasks enqueued, or (open) left for later.
    A quiet run reads one partition: no slot since the cursor."""
    walk = LateWalk()
    settle = settings.LATE_MARGIN_SECONDS + settings.LATE_INDEX_LAG_SECONDS
    slots = store.late_slots(store.cursor(CURSOR) or 0)
    for i, s in enumerate(slots):
        if not s.swept:
            if not slot_closed(s.slot, settings.LATE_SLOT_SECONDS, settle, now):
                walk.open = sum(1 for later in slots[i:] if not later.swept)
                break  # still filling (and every later slot too): the cursor waits here
            report = reduce_late(store, settings, s.slot, run_id, now)
            if report is not None:
                walk.reports[s.slot] = report
            elif not _swept_now(store, s.slot):
                walk.enqueued += enqueue_late(store, queue, settings, s.slot, now, claim)
                walk.waiting.append(s.slot)
        # The cursor passes a slot only once it and every slot before it are swept.
        if not walk.waiting:
            store.advance_cursor(CURSOR, s.slot + 1)
    return walk


def _swept_now(store: LateFanoutStore, slot: int) -> bool:
    state = store.late_slot(slot)
    return state is not None and state.swept
