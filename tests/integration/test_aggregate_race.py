"""A bucket's reducer B, slow, against another reducer A that settles and rolls the bucket and a late slot that
then adds its stragglers into the stored aggregates (`apply_late`, as the slot's reducer does once the bucket
is rolled), the two run at EVERY store call k of B: on the in-memory store (its calls are B's port calls,
each atomic) and on DynamoDB (moto: its calls are B's DynamoDB requests, one after another). Whatever k,
the aggregates hold the on-time usage and each straggler once, and the first-emission rows the on-time
usage, once. Without a race, the slot's whole reducer gives the same aggregates and its delta rows.

Found by review: B read the bucket unsettled, then put its aggregates unconditionally after A had settled
them and the late slot had added its stragglers: the additions were overwritten, so parity (which answers
from the aggregates) under-counted them for good, while the billing rows stayed right. Each aggregate is
now created only if it is not there (chalicelib/adapters/dynamodb/control.py)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.aggregation import OrgAggregate, aggregate, aggregate_late, combine_by_bucket
from chalicelib.core.fanout import ShardTask
from chalicelib.core.late import LATE_SHARDS
from chalicelib.core.orgs import Org
from chalicelib.core.samples import Sample
from chalicelib.ports import BillingStore
from chalicelib.services.late_fanout import reduce_late
from chalicelib.services.rollup_fanout import handle_task, reduce_bucket
from chalicelib.settings import load_settings
from tests.conftest import PREFIX, T0, empty_tables, written_once
from tests.simulation.engine import Steps

H = 3600
SHARDS = 2
SETTINGS = load_settings({"SHADOW": "false", "BILL_FROM": "0", "EVENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x"})
RETENTION = SETTINGS.sample_retention_seconds
# (org, memory size, seconds) of the hour's samples on time, and of its stragglers (a late org among them:
# its aggregate is created by the late slot's addition).
ON_TIME = [("leg", 1024, 20)] * 6 + [("uni", 4096, 20)] * 3
LATE = [("leg", 1024, 20)] * 2 + [("uni", 4096, 20)] + [("hooli", 8192, 20)]


def sample(i: int, b: int, org: str, mb: int, secs: int, late: bool) -> Sample:
    start = Decimal(b + 20 * i)
    return Sample(f"{'late' if late else 'on'}-{b}-{i}", org, "sbx", "cell-a", "w1", mb, 1, b, start, start + secs,
                  Decimal(secs), b + 60 * 86400, late=late)


def slot_of(b: int) -> int:
    """The late slot that bucket b's stragglers are in, here."""
    return b + H + 900


def prepare(store: BillingStore, b: int, late_partials: bool = False) -> int:
    """Bucket b closed with every shard's partial written, its stragglers in a late slot (with every late
    partial written if asked): what is left is B's last task (its partial again, then the reduce), A's and
    the slot's. The slot."""
    slot = slot_of(b)
    for org in ("leg", "uni", "hooli"):
        store.put_org(Org(org, plan="pro", billing_mode="unified" if org == "uni" else "legacy",
                          stripe_customer_id=f"cus_{org}"))
    on_time = [sample(i, b, *s, late=False) for i, s in enumerate(ON_TIME)]
    late = [sample(i, b, *s, late=True) for i, s in enumerate(LATE)]
    # The partials as the workers compute them, from the same samples on a scratch store (moto's queries scan).
    scratch = MemoryStore(retention_seconds=RETENTION, sample_shards=SHARDS)
    for store_ in (store, scratch):
        store_.put_samples(on_time)
        store_.put_samples(late, late_slot=slot)
    for shard in range(SHARDS):
        store.put_partial(b, shard, aggregate(b, scratch.shard_samples(b, shard)))
    for shard in range(LATE_SHARDS if late_partials else 0):
        store.put_partial(slot, shard, aggregate_late(scratch.late_slot_samples(slot, shard)), late=True)
    return slot


def late_additions(b: int, slot: int) -> list[OrgAggregate]:
    """What the late slot's reducer adds into the aggregates (services/late_fanout.py: its partials combined)."""
    scratch = MemoryStore(retention_seconds=RETENTION, sample_shards=SHARDS)
    scratch.put_samples([sample(i, b, *s, late=True) for i, s in enumerate(LATE)], late_slot=slot)
    return combine_by_bucket([a for shard in range(LATE_SHARDS)
                              for a in aggregate_late(scratch.late_slot_samples(slot, shard))])


def b_reduces(b_store: BillingStore, b: int, now: int) -> None:
    """B: the coordinator's reduce of a bucket it found unsettled (a worker's reduce is the same call after
    its partial: tests/simulation/test_fanout_simulation.py)."""
    reduce_bucket(b_store, SETTINGS, b, "B", now, b_store.bucket_state(b))


def race(store: BillingStore, b_store: BillingStore, steps: Steps, b: int, slot: int) -> None:
    """B (on `b_store`, its calls counted by `steps`) reduces; A and the late slot act at B's step k."""
    now = slot + 60
    fired: list[bool] = []

    def a_and_the_late_slot() -> None:
        fired.append(True)
        reduce_bucket(store, SETTINGS, b, "A", now, store.bucket_state(b))  # settles and rolls, if B did not
        assert store.bucket_state(b).rolled  # type: ignore[union-attr]
        # The late slot's addition, as its reducer makes it once the bucket is rolled (its delta rows and
        # mark are not this race's: tests/integration/test_late_fanout_crashes.py).
        assert store.apply_late(slot, late_additions(b, slot)) == 3

    def at_k(name: str, call: Callable[[], Any]) -> Any:
        a_and_the_late_slot()
        return call()

    steps.action = at_k
    b_reduces(b_store, b, now)
    if not fired:
        a_and_the_late_slot()  # k past B's last call: A after B


def check(store: BillingStore, b: int, slot: int, swept: bool = False) -> None:
    aggs = {a.org_id: (a.seconds_by_memory, a.samples, a.late_slots) for a in store.aggregates(b)}
    assert aggs == {"leg": ({1024: Decimal(160)}, 8, {slot}), "uni": ({4096: Decimal(80)}, 4, {slot}),
                    "hooli": ({8192: Decimal(20)}, 1, {slot})}, "each straggler added once, none overwritten"
    rows = {r.id: r.value for r in store.outbox_queue("pending")}
    assert rows == {
        f"leg:{b}:sandbox_compute_sandbox_1gb": Decimal(120),
        f"uni:{b}:sandbox_compute_sandbox_overage": Decimal(240),
    } | ({
        f"leg:{b}:sandbox_compute_sandbox_1gb:late:{slot}": Decimal(40),
        f"uni:{b}:sandbox_compute_sandbox_overage:late:{slot}": Decimal(80),
        f"hooli:{b}:sandbox_compute_sandbox_8gb:late:{slot}": Decimal(20),
    } if swept else {})
    assert store.bucket_state(b).rolled and store.late_slot(slot).swept == swept  # type: ignore[union-attr]


World = Callable[[int], tuple[BillingStore, BillingStore, Steps, int]]  # k -> store, B's store, B's steps, slot


def every_step(world: World) -> int:
    """B's calls counted without a race, then the race at each call k and once after the last; how many."""
    _, b_store, steps, slot = world(0)
    b_reduces(b_store, T0, slot + 60)
    for k in range(1, steps.count + 2):
        store, b_store, at_k, slot = world(k)
        race(store, b_store, at_k, T0, slot)
        check(store, T0, slot)
    return steps.count


def test_on_the_memory_store_at_every_call_of_the_reducer() -> None:
    def world(k: int) -> tuple[BillingStore, BillingStore, Steps, int]:
        store = MemoryStore(retention_seconds=RETENTION, sample_shards=SHARDS)
        slot = prepare(store, T0)
        steps = Steps(at=k)
        return store, steps.wrap(store.handle()), steps, slot

    assert every_step(world) >= 8


def test_on_dynamodb_at_every_request_of_the_reducer(dynamodb: Any) -> None:
    def world(k: int) -> tuple[BillingStore, BillingStore, Steps, int]:
        empty_tables([f"{PREFIX}-{t}" for t in ("samples", "orgs", "outbox", "control")])  # moto scans per query
        store = DynamoStore(dynamodb, PREFIX, RETENTION, sample_shards=SHARDS)
        slots: list[int] = []
        # The same bucket before B each time: prepared through the store once (a worker's first run), restored
        # in place for every other k (tests/conftest.py).
        written_once("aggregate-race-prepared", lambda: slots.append(prepare(store, T0)))
        slot = slot_of(T0)
        assert slots in ([], [slot])
        steps = Steps(at=k)
        slow = DynamoStore(steps.wrap(dynamodb), PREFIX, RETENTION, sample_shards=SHARDS)
        slow.outbox_puts_at_once = slow.aggregate_puts_at_once = 1  # B's requests in one order, every run
        return store, slow, steps, slot

    assert every_step(world) >= 12


def test_without_a_race_both_stores_give_what_the_scenarios_check(dynamodb: Any) -> None:
    for store in (MemoryStore(retention_seconds=RETENTION, sample_shards=SHARDS),
                  DynamoStore(dynamodb, PREFIX, RETENTION, sample_shards=SHARDS)):
        slot = prepare(store, T0, late_partials=True)
        handle_task(store, SETTINGS, ShardTask(T0, SHARDS - 1), "B", slot + 60)
        handle_task(store, SETTINGS, ShardTask(T0, 0), "B again", slot + 60)  # a duplicate delivery: nothing
        reduce_late(store, SETTINGS, slot, "late", slot + 60)  # the late slot's reducer: the same additions
        check(store, T0, slot, swept=True)
