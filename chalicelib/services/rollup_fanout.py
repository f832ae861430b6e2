"""The rollup fanned out: a coordinator, one worker per (bucket, shard), and a reducer.

- The COORDINATOR (the schedule's run) walks the closed buckets from the cursor and, for a bucket not
  rolled, enqueues one task per shard whose partial is missing (`claim_fanout`: once per
  FANOUT_RETRY_SECONDS, so frequent runs and parity's nudges do not flood the queue).
- A WORKER reads its one shard (strongly consistent) and stores the shard's partial: per (org,
  memory size) seconds and samples, deterministic content, so a duplicate delivery or a retry after
  a kill writes the same items again.
- The REDUCER runs in whichever worker (or coordinator) finds every partial present (a worker looks
  once per bucket of its batch, after the batch's last partial of it): it combines
  them, stores the aggregates once (conditional on the bucket record), and continues the chain that
  was always there: outbox rows (`attribute_not_exists`), then the mark `aggregated -> rolled`.
  Two reducers at once write identical aggregates and rows; one mark wins.

A reducer that combined before every partial was there would store a bucket short of a shard's usage
for good; `missing_shards` is the one gate, and the simulation checks Stripe's totals against it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.core.aggregation import BucketState, aggregate, combine
from chalicelib.core.fanout import ShardTask, TaskError, missing_shards, parse_task, tasks_for
from chalicelib.core.metering import plan_bucket
from chalicelib.observability import logger
from chalicelib.ports import AggregateStore, LateStore, OrgStore, OutboxStore, QueueConsumer, SampleStore, TaskQueue
from chalicelib.services.late_fanout import handle_late_task
from chalicelib.settings import Settings

# What one drain of an in-process queue takes at a time (SQS's own batch is 10).
DRAIN_BATCH = 100


class ShardedStore(SampleStore, AggregateStore, Protocol):
    """What the coordinator reads of a bucket: how many shards its samples span and whose partial is in."""


class FanoutStore(OrgStore, OutboxStore, ShardedStore, LateStore, Protocol):
    """The billing store's roles a shard's worker and the reducer use: a shard's samples, partials and the
    aggregates, the orgs' billing modes, the bucket's first outbox rows; a late slot's too (a queue's
    message may be either)."""


def roll_bucket(store: FanoutStore, settings: Settings, b: int, run_id: str, now: int) -> dict[str, Any] | None:
    """A settled bucket's rows, then its mark; None if another reducer marked it first."""
    aggs = store.aggregates(b)
    # Checked after the aggregates were read: once a bucket is rolled, stragglers are added to its stored
    # aggregates (late rows); emitting those again as first-emission rows would bill them twice.
    state = store.bucket_state(b)
    if state is None or state.rolled:
        return None
    orgs = store.get_orgs(a.org_id for a in aggs)
    plan = plan_bucket(b, aggs, orgs, settings, run_id, now)
    # Rows first, then the mark: a crash in between re-plans the same rows, and existing rows keep their state.
    created = store.create_outbox_rows(plan.rows)
    report = {"run_id": run_id, "orgs": len(aggs), "rows": len(plan.rows), "consumed": plan.consumed,
              "unknown": plan.unknown}
    if not store.mark_bucket_rolled(b, report):
        return None
    if aggs:
        logger.info("bucket_rolled", extra={"run_id": run_id, "bucket_start": b, **report})
    return report | {"created": created}


def reduce_bucket(
    store: FanoutStore, settings: Settings, b: int, run_id: str, now: int, state: BucketState | None
) -> dict[str, Any] | None:
    """Settle the bucket from its partials once every one is present, and roll it; None if it is not
    the caller's to roll (a partial missing, or rolled already, or another reducer won the mark).
    `state` is the bucket's as the caller read it (None: not settled), not read again here."""
    if state is not None and state.rolled:
        return None
    if state is None:
        shards = store.bucket_shard_count(b)
        if missing_shards(shards, store.partial_shards(b)):
            return None
        aggs = combine(b, store.partials(b))
        if store.save_aggregates(b, aggs, {"settled_at": now, "shards": shards, "run_id": run_id}):
            logger.info("bucket_settled", extra={"bucket_start": b, "orgs": len(aggs), "shards": shards})
    return roll_bucket(store, settings, b, run_id, now)


def handle_task(
    store: FanoutStore, settings: Settings, task: ShardTask, run_id: str, now: int, reduce: bool = True
) -> dict[str, Any] | None:
    """A worker's one task: its shard's partial, then the reduce if it was the last one missing (`reduce`
    False: a later task of the same bucket in the worker's batch reduces after it)."""
    b = task.bucket_start
    state = store.bucket_state(b)
    if state is not None and state.rolled:
        return None  # a duplicate, or a redrive after the bucket was rolled: nothing left to do
    if state is None:
        if task.shard >= store.bucket_shard_count(b):
            raise TaskError(f"bucket {b} has no shard {task.shard}")
        # Written without asking first whether it is there (a read per task): the partial's content is
        # deterministic, so a duplicate delivery writes the same items again; the reduce reads the markers.
        store.put_partial(b, task.shard, aggregate(b, store.shard_samples(b, task.shard)))
    if not reduce:
        return None
    # The state read above is handed on, not read again (a read per task): if another reducer settled the
    # bucket meanwhile, this one's save_aggregates is refused by its condition and roll_bucket reads the
    # state afresh before any row or mark.
    return reduce_bucket(store, settings, b, run_id, now, state)


def enqueue_bucket(store: ShardedStore, queue: TaskQueue, settings: Settings, b: int, now: int,
                   claim: bool = True) -> int:
    """Enqueue the tasks of a bucket whose partials are missing (unless enqueued lately); how many."""
    if claim and not store.claim_fanout(b, now, settings.FANOUT_RETRY_SECONDS):
        return 0
    tasks = tasks_for(b, store.bucket_shard_count(b), store.partial_shards(b))
    queue.send([t.body() for t in tasks])
    return len(tasks)


class InProcessTasks(TaskQueue):
    """The tasks of a run that is its own worker pool: kept in a list, handled right after the walk."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, bodies: list[str]) -> None:
        self.bodies += bodies


@dataclass
class Drained:
    """What one drain of a queue did: the reduces that rolled a bucket or swept a late slot, and the
    messages left to retry."""

    rolled: dict[int, dict[str, Any]] = field(default_factory=dict)
    swept: dict[int, dict[str, Any]] = field(default_factory=dict)  # late slots billed
    failed: list[Hashable] = field(default_factory=list)


def on_messages(store: FanoutStore, settings: Settings, messages: Sequence[tuple[Hashable, str]], run_id: str,
                now: Callable[[], int]) -> Drained:
    """A worker invocation: each (id, body) handled on its own; the ids that failed are retried by the
    queue (partial batch failure), the rest are done. A message that is no task fails every time and
    ends on the dead-letter queue, where the alarm sees it."""
    out = Drained()
    reducers = last_of_each(messages)
    for i, (message_id, body) in enumerate(messages):
        try:
            task = parse_task(body)
            if task.late:
                report = handle_late_task(store, settings, task, run_id, now(), reduce=i in reducers)
            else:
                report = handle_task(store, settings, task, run_id, now(), reduce=i in reducers)
        except TaskError as exc:
            logger.error("rollup_task_unusable", extra={"message_id": message_id, "error": str(exc)})
            out.failed.append(message_id)
            continue
        except Exception as exc:  # every other failure: the queue retries it; logged here
            logger.warning("rollup_task_failed", extra={"message_id": message_id, "error": repr(exc)[:300]})
            out.failed.append(message_id)
            continue
        if report is not None:
            (out.swept if task.late else out.rolled)[task.bucket_start] = report
    return out


def last_of_each(messages: Sequence[tuple[Hashable, str]]) -> set[int]:
    """The positions of each bucket's (and late slot's) last task in a batch: only it reduces, once the
    batch's other partials of its bucket are written. An earlier one's reduce would read the markers only
    to find missing a partial this batch is about to write (a query per task, for nothing). If that last
    task fails, it is retried and reduces then; the coordinator's walk reduces every bucket it finds
    complete as well."""
    last: dict[tuple[int, bool], int] = {}
    for i, (_, body) in enumerate(messages):
        try:
            task = parse_task(body)
        except TaskError:
            continue  # answered as unusable by the loop
        last[(task.bucket_start, task.late)] = i
    return set(last.values())


def drain(store: FanoutStore, settings: Settings, queue: QueueConsumer, run_id: str,
          now: Callable[[], int]) -> Drained:
    """Run the workers in this process until the queue is empty (no SQS configured: the CLI, tests)."""
    total = Drained()
    while batch := queue.receive(DRAIN_BATCH):
        done = on_messages(store, settings, batch, run_id, now)
        total.rolled |= done.rolled
        total.swept |= done.swept
        total.failed += done.failed
        queue.delete([receipt for receipt, _ in batch if receipt not in done.failed])
        if done.failed:
            return total  # a store that fails now fails the retry too: the next run tries again
    return total
