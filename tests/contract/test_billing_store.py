"""One suite, two BillingStores: MemoryStore must answer exactly as DynamoStore (moto) does.

Each test names a rule a service relies on; the `store` fixture (conftest.py)
runs it against both adapters.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chalicelib.core.aggregation import BucketState, OrgAggregate
from chalicelib.core.late import LATE_SHARDS, LateSlot
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow, State
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import Sample, shard_of
from chalicelib.ports import BillingStore, StoreUnavailable
from tests.contract.conftest import RETENTION

B = 1795564800  # a bucket start
H = 3600
SLOT = B + 2 * H  # a late slot (stragglers arrive after their bucket closed)


def sample(event_id: str, bucket: int = B, org: str = "o1", mb: int = 1024, seconds: str = "20",
           late: bool = False) -> Sample:
    start = Decimal(bucket + 100)
    return Sample(event_id, org, "sbx", "cell-a", "w1", mb, 1, bucket, start, start + Decimal(seconds),
                  Decimal(seconds), bucket + H + RETENTION, late)


def row(row_id: str, bucket: int = B, state: State = "pending", value: str = "10") -> OutboxRow:
    return OutboxRow(row_id, "o1", bucket, bucket + H, "m", Decimal(value), "first", state, samples=3,
                     run_id="run-1", created_at=bucket + H)


# --- orgs -------------------------------------------------------------------
def test_orgs_put_get_and_batch_get_the_known_ones(store: BillingStore) -> None:
    a = Org("a", plan="pro", billing_mode="unified", stripe_customer_id="cus_a", max_memory_gb=64,
            subscription_id="sub_a", subscription_item_ids=("si_1", "si_2"), credit_txn_id="tx",
            plan_changed_at=5, updated_at=6)
    assert store.put_org(a) == a
    store.put_org(Org("b"))
    assert store.get_org("a") == a and store.get_org("b") == Org("b") and store.get_org("zz") is None
    assert store.get_orgs(["a", "b", "zz", "a"]) == {"a": a, "b": Org("b")}
    assert store.get_orgs([]) == {}


def test_put_org_replaces_the_whole_record(store: BillingStore) -> None:
    store.put_org(Org("a", plan="pro", stripe_customer_id="cus_a", subscription_item_ids=("si",)))
    store.put_org(Org("a", max_memory_gb=8))
    assert store.get_org("a") == Org("a", max_memory_gb=8)


def test_update_org_sets_only_the_named_fields_and_creates_a_new_org(store: BillingStore) -> None:
    store.put_org(Org("a", plan="pro", stripe_customer_id="cus_a", plan_changed_at=7))
    updated = store.update_org("a", {"billing_mode": "unified", "stripe_customer_id": None}, now=50)
    expected = Org("a", plan="pro", billing_mode="unified", stripe_customer_id="cus_a", plan_changed_at=7,
                   updated_at=50)
    assert updated == expected and store.get_org("a") == expected, "None leaves the stored value"
    created = store.update_org("new", {"billing_mode": "legacy", "max_memory_gb": 16}, now=60)
    assert created == Org("new", max_memory_gb=16, updated_at=60) == store.get_org("new")


# --- samples ----------------------------------------------------------------
def test_put_samples_is_idempotent_and_a_batch_may_name_a_key_twice(store: BillingStore) -> None:
    batch = [sample("e1"), sample("e2"), sample("e1"), sample("e1", bucket=B + H)]
    assert store.put_samples(batch) == 0
    assert store.put_samples(batch) == 0
    assert sorted(s.event_id for s in store.bucket_samples(B)) == ["e1", "e2"]
    assert [s.bucket_start for s in store.bucket_samples(B + H)] == [B + H]
    assert list(store.bucket_samples(B + 2 * H)) == []


def test_bucket_samples_read_back_every_field_in_shard_then_id_order(store: BillingStore) -> None:
    ids = [f"ev-{i}" for i in range(40)]
    store.put_samples([sample(e, seconds="12.5") for e in ids])
    got = list(store.bucket_samples(B))
    assert [s.event_id for s in got] == sorted(ids, key=lambda e: (shard_of(e), e))
    s = got[0]
    assert (s.org_id, s.memory_mb, s.bucket_start, s.start, s.end, s.seconds, s.late) == (
        "o1", 1024, B, Decimal(B + 100), Decimal(B + 100) + Decimal("12.5"), Decimal("12.5"), False)


def test_late_samples_are_flagged_counted_once_and_indexed_under_their_slot(store: BillingStore) -> None:
    assert store.late_slots(0) == []
    assert store.put_samples([sample("on"), sample("l1", late=True), sample("l2", late=True, bucket=B + H)],
                             late_slot=SLOT) == 2
    assert store.put_samples([sample("l1", late=True)], late_slot=SLOT + 300) == 0, "a replay is not new"
    assert store.put_samples([sample("on", late=True)], late_slot=SLOT + 300) == 0, "nor a late copy of an on-time one"
    assert {s.event_id: s.late for s in store.bucket_samples(B)} == {"on": False, "l1": True}
    # Each write carrying a late sample records its slot first, replays too (a slot with nothing new is cheap).
    assert store.late_slots(0) == [LateSlot(SLOT), LateSlot(SLOT + 300)]
    assert store.late_slots(SLOT + 1) == [LateSlot(SLOT + 300)] and store.late_slot(SLOT + 600) is None
    indexed = [s for k in range(LATE_SHARDS) for s in store.late_slot_samples(SLOT, k)]
    assert sorted((s.event_id, s.bucket_start, s.late) for s in indexed) == [("l1", B, True), ("l2", B + H, True)]
    assert [s for k in range(LATE_SHARDS) for s in store.late_slot_samples(SLOT + 300, k)] == []


def test_a_late_slot_partition_is_ordered_by_bucket_then_event(store: BillingStore) -> None:
    ids = [f"late-{i}" for i in range(24)]
    store.put_samples([sample(e, bucket=B + (i % 2) * H, late=True) for i, e in enumerate(ids)], late_slot=SLOT)
    got = {k: [(s.bucket_start, s.event_id) for s in store.late_slot_samples(SLOT, k)] for k in range(LATE_SHARDS)}
    assert all(v == sorted(v) for v in got.values()) and sum(map(len, got.values())) == 24
    assert {shard_of(e, LATE_SHARDS) for v in got.values() for _, e in v} == {k for k, v in got.items() if v}
    assert {k for k, v in got.items() for _, e in v if shard_of(e, LATE_SHARDS) != k} == set()


def test_late_samples_need_their_slot(store: BillingStore) -> None:
    with pytest.raises(ValueError):
        store.put_samples([sample("l1", late=True)])
    assert store.late_slots(0) == [] and list(store.bucket_samples(B)) == []


def test_an_on_time_put_overwrites_the_stored_sample(store: BillingStore) -> None:
    store.put_samples([sample("e1", seconds="5")])
    store.put_samples([sample("e1", seconds="7")])
    [s] = store.bucket_samples(B)
    assert s.seconds == Decimal(7)


def test_on_time_writes_record_no_late_slot(store: BillingStore) -> None:
    store.put_samples([sample("a"), sample("b")], late_slot=SLOT)
    assert store.late_slots(0) == []


# --- quarantine -------------------------------------------------------------
def quarantined(qid: str, kind: str = "unknown_org") -> QuarantineItem:
    return QuarantineItem(qid, kind, "why", "cell-a", json.dumps({"id": qid}), 1000)


def test_quarantine_put_list_by_kind_and_delete(store: BillingStore) -> None:
    items = [quarantined(f"q{i}", "invalid" if i % 3 == 0 else "unknown_org") for i in range(10)]
    store.put_quarantine(items + items[:2])
    listed = list(store.quarantine())
    assert [q.quarantine_id for q in listed] == sorted(
        (q.quarantine_id for q in items), key=lambda q: (shard_of(q) % 8, q))
    assert set(listed) == set(items)
    assert {q.quarantine_id for q in store.quarantine("invalid")} == {"q0", "q3", "q6", "q9"}
    store.delete_quarantine(["q0", "q1", "q1", "missing"])
    assert {q.quarantine_id for q in store.quarantine()} == {f"q{i}" for i in range(2, 10)}


def test_quarantine_put_replaces_an_item_of_the_same_id(store: BillingStore) -> None:
    store.put_quarantine([quarantined("q1", "invalid")])
    store.put_quarantine([quarantined("q1", "unknown_org")])
    assert [q.kind for q in store.quarantine()] == ["unknown_org"]


# --- aggregates and bucket state -------------------------------------------
AGGS = [
    OrgAggregate("o2", B, {4096: Decimal("1.5")}, 1),
    OrgAggregate("o1", B, {512: Decimal(3), 1024: Decimal("20.25")}, 4),
]


def test_aggregates_are_saved_once(store: BillingStore) -> None:
    assert store.bucket_state(B) is None and store.aggregates(B) == []
    assert store.save_aggregates(B, AGGS, {"settled_at": 9})
    assert not store.save_aggregates(B, [OrgAggregate("o3", B, {1024: Decimal(1)}, 1)], {"settled_at": 10})
    got = store.aggregates(B)
    assert got == sorted(AGGS, key=lambda a: a.org_id), "sorted by org"
    assert list(got[0].seconds_by_memory) == [1024, 512], "sizes in DynamoDB's attribute-name order"
    assert store.aggregates(B + H) == []
    assert store.bucket_state(B) == BucketState(B, "aggregated", 2)


def test_aggregates_are_created_only_where_none_is_stored(store: BillingStore) -> None:
    # A late slot's addition made before the record (an aggregate stored, no bucket record) is kept: the
    # reducer's put of the on-time sums never overwrites an aggregate (tests/integration/test_aggregate_race.py).
    assert store.apply_late(SLOT, [OrgAggregate("o1", B, {1024: Decimal(5)}, 1)]) == 1
    assert store.save_aggregates(B, AGGS, {})
    o1, o2 = store.aggregates(B)
    assert (o1.seconds_by_memory, o1.samples, o1.late_slots) == ({1024: Decimal(5)}, 1, {SLOT})
    assert o2 == sorted(AGGS, key=lambda a: a.org_id)[1]


def test_an_empty_bucket_is_settled_too(store: BillingStore) -> None:
    assert store.save_aggregates(B, [], {})
    state = store.bucket_state(B)
    assert state == BucketState(B, "aggregated", 0) and not state.rolled and store.aggregates(B) == []


def test_mark_bucket_rolled_only_from_aggregated_and_once(store: BillingStore) -> None:
    assert not store.mark_bucket_rolled(B, {"run_id": "r0"}), "no bucket item"
    store.save_aggregates(B, AGGS, {})
    assert store.mark_bucket_rolled(B, {"run_id": "r1", "rows": 2})
    assert not store.mark_bucket_rolled(B, {"run_id": "r2"})
    assert store.bucket_state(B) == BucketState(B, "rolled", 2)


# --- lease and cursor -------------------------------------------------------
def test_lease_is_exclusive_until_it_expires_and_only_its_holder_releases_it(store: BillingStore) -> None:
    assert store.acquire_lease("rollup", "a", now=100, seconds=60)
    assert not store.acquire_lease("rollup", "b", now=159, seconds=60)
    assert not store.acquire_lease("rollup", "a", now=120, seconds=60), "not even its holder renews early"
    assert store.acquire_lease("other", "b", now=120, seconds=60), "leases are per name"
    store.release_lease("rollup", "b")
    assert not store.acquire_lease("rollup", "b", now=150, seconds=60), "b cannot release a's lease"
    assert store.acquire_lease("rollup", "b", now=160, seconds=60), "expired at now + seconds"
    store.release_lease("rollup", "a")
    assert not store.acquire_lease("rollup", "c", now=170, seconds=60)
    store.release_lease("rollup", "b")
    assert store.acquire_lease("rollup", "c", now=170, seconds=60)
    store.release_lease("never-held", "x")


def test_cursor_moves_forward_only(store: BillingStore) -> None:
    assert store.cursor("rollup") is None
    store.advance_cursor("rollup", 100)
    store.advance_cursor("rollup", 50)
    assert store.cursor("rollup") == 100
    store.advance_cursor("rollup", 100)
    store.advance_cursor("rollup", 200)
    assert store.cursor("rollup") == 200 and store.cursor("other") is None


# --- outbox -----------------------------------------------------------------
def test_create_outbox_rows_never_resets_an_existing_row(store: BillingStore) -> None:
    assert store.create_outbox_rows([row("a"), row("b"), row("a")]) == 2
    assert store.transition("a", "pending", "sent", now=500, detail="sent")
    assert store.create_outbox_rows([row("a", value="99"), row("c")]) == 1
    a = store.get_outbox_row("a")
    assert a is not None and (a.state, a.value, a.sent_at, a.detail) == ("sent", Decimal(10), 500, "sent")
    assert store.get_outbox_row("c") == row("c") and store.get_outbox_row("zz") is None
    assert store.create_outbox_rows([]) == 0


def test_rows_read_back_every_field(store: BillingStore) -> None:
    full = OutboxRow("x", "o9", B, B + H, "meter", Decimal("0.123457"), "delta", "shadow", samples=7,
                     run_id="", created_at=3, sent_at=None, detail=None)
    store.create_outbox_rows([full])
    assert store.get_outbox_row("x") == full
    assert store.outbox_queue("shadow") == [full]


def test_transition_is_conditional_on_the_from_state(store: BillingStore) -> None:
    store.create_outbox_rows([row("a")])
    assert not store.transition("a", "shadow", "pending", now=1)
    assert not store.transition("missing", "pending", "sent", now=1)
    assert store.transition("a", "pending", "failed", now=2, detail="x" * 600)
    failed = store.get_outbox_row("a")
    assert failed is not None and failed.state == "failed" and failed.detail == "x" * 500 and failed.sent_at is None
    assert not store.transition("a", "pending", "sent", now=3)
    assert store.transition("a", "failed", "pending", now=4)
    assert store.transition("a", "pending", "sent", now=5)
    sent = store.get_outbox_row("a")
    assert sent is not None and (sent.state, sent.sent_at, sent.detail) == ("sent", 5, "x" * 500)


def test_outbox_queue_orders_by_bucket_filters_by_min_bucket_and_limits(store: BillingStore) -> None:
    store.create_outbox_rows([row(f"p{i}", bucket=B + i * H) for i in (3, 0, 2, 1)] + [row("s", state="shadow")])
    assert [r.id for r in store.outbox_queue("pending")] == ["p0", "p1", "p2", "p3"]
    assert [r.id for r in store.outbox_queue("pending", min_bucket=B + 2 * H)] == ["p2", "p3"]
    assert [r.id for r in store.outbox_queue("pending", limit=3)] == ["p0", "p1", "p2"]
    assert [r.id for r in store.outbox_queue("shadow")] == ["s"]
    store.transition("p0", "pending", "sent", now=1)
    store.transition("s", "shadow", "pending", now=1)
    assert [r.id for r in store.outbox_queue("pending")] == ["s", "p1", "p2", "p3"], "a row moves queue"
    assert store.outbox_queue("shadow") == [] and store.outbox_queue("sent") == [], "only queued states are indexed"
    store.transition("p3", "pending", "failed", now=2, detail="rejected")
    assert [r.id for r in store.outbox_queue("failed")] == ["p3"], "failed rows are indexed for the operator"
    store.transition("p3", "failed", "resent", now=3)
    assert store.outbox_queue("failed") == [] and store.outbox_queue("resent") == []


def test_outbox_queue_limit_below_one_still_returns_one_row(store: BillingStore) -> None:
    # A quirk of DynamoStore (it checks the limit after appending), mirrored so callers see one behaviour.
    store.create_outbox_rows([row("a"), row("b", bucket=B + H)])
    assert [r.id for r in store.outbox_queue("pending", limit=0)] == ["a"]


# --- stragglers ---------------------------------------------------------------
def late_setup(store: BillingStore) -> None:
    store.put_samples([sample("on"), sample("l1", late=True), sample("l2", late=True, mb=4096)], late_slot=SLOT)
    store.save_aggregates(B, [OrgAggregate("o1", B, {1024: Decimal(20)}, 1)], {})


def test_apply_late_adds_each_aggregate_once_per_slot(store: BillingStore) -> None:
    late_setup(store)
    late = [OrgAggregate("o1", B, {1024: Decimal(20), 4096: Decimal("2.5")}, 2),
            OrgAggregate("o2", B, {8192: Decimal(1)}, 1)]
    assert store.apply_late(SLOT, late) == 2
    assert store.apply_late(SLOT, late) == 0, "a retry or a second reducer adds nothing"
    assert store.aggregates(B) == [
        OrgAggregate("o1", B, {1024: Decimal(40), 4096: Decimal("2.5")}, 3, frozenset({SLOT})),
        OrgAggregate("o2", B, {8192: Decimal(1)}, 1, frozenset({SLOT})),
    ]
    assert store.apply_late(SLOT + 300, late[:1]) == 1
    [o1, _] = store.aggregates(B)
    assert o1.seconds_by_memory == {1024: Decimal(60), 4096: Decimal(5)} and o1.late_slots == {SLOT, SLOT + 300}


def test_a_slot_is_swept_once_and_then_refuses_writes(store: BillingStore) -> None:
    late_setup(store)
    assert store.mark_late_swept(SLOT, {"rows": 2})
    assert not store.mark_late_swept(SLOT, {"rows": 3}), "swept already"
    assert not store.mark_late_swept(SLOT + 300, {}), "no such slot"
    assert store.late_slots(0) == [LateSlot(SLOT, swept=True)]
    # A write that outlived the margin would join a swept slot: refused, the cell sends it again later.
    with pytest.raises(StoreUnavailable):
        store.put_samples([sample("l3", late=True)], late_slot=SLOT)
    assert store.put_samples([sample("l3", late=True)], late_slot=SLOT + 300) == 1


def test_unswept_late_reads_the_window_s_buckets_in_slots_not_swept(store: BillingStore) -> None:
    store.put_samples([sample("a", late=True), sample("b", late=True, bucket=B + H),
                       sample("c", late=True, bucket=B + 2 * H)], late_slot=SLOT)
    store.put_samples([sample("d", late=True, bucket=B + H)], late_slot=SLOT + 300)
    got = store.unswept_late(B + H, B + 2 * H, since=0)
    assert sorted((slot, s.event_id) for slot, s in got) == [(SLOT, "b"), (SLOT, "c"), (SLOT + 300, "d")]
    store.mark_late_swept(SLOT, {})
    assert [(slot, s.event_id) for slot, s in store.unswept_late(B, B + 2 * H, since=0)] == [(SLOT + 300, "d")]
    assert store.unswept_late(B, B + 2 * H, since=SLOT + 301) == []


def test_late_partials_and_claims_are_apart_from_the_buckets(store: BillingStore) -> None:
    parts = [OrgAggregate("o1", B, {1024: Decimal(1)}, 1), OrgAggregate("o1", B + H, {1024: Decimal(2)}, 1)]
    store.put_partial(SLOT, 3, parts, late=True)
    assert store.partial_shards(SLOT, late=True) == {3} and store.partial_shards(SLOT) == frozenset()
    assert store.partials(SLOT, late=True) == parts, "each row keeps its own bucket"
    assert store.claim_fanout(SLOT, 10, 60, late=True) and store.claim_fanout(SLOT, 10, 60)
    assert not store.claim_fanout(SLOT, 11, 60, late=True)


