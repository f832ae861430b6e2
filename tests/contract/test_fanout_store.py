"""The store methods of the fanned-out rollup and of parity, on both adapters: shard counts recorded
per bucket, one shard's samples, partials, the fan-out claim, the late index by bucket."""

from __future__ import annotations

from decimal import Decimal

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.samples import SAMPLE_SHARDS, shard_of
from chalicelib.ports import BillingStore
from tests.conftest import PREFIX
from tests.contract.conftest import RETENTION
from tests.contract.test_billing_store import B, H, sample


def configured(store: BillingStore, shards: int) -> BillingStore:
    """Another process on the same tables, configured with another SAMPLE_SHARDS."""
    if isinstance(store, MemoryStore):
        return MemoryStore(store.tables, RETENTION, sample_shards=shards)
    assert isinstance(store, DynamoStore)
    return DynamoStore(store.client, PREFIX, RETENTION, shards)


def test_a_bucket_keeps_the_shard_count_its_first_sample_was_written_with(store: BillingStore) -> None:
    four, eight = configured(store, 4), configured(store, 8)
    assert store.bucket_shard_count(B) == SAMPLE_SHARDS, "no record: a bucket written before counts were"
    four.put_samples([sample(f"e{i}") for i in range(20)])
    eight.put_samples([sample(f"f{i}") for i in range(20)] + [sample("g", bucket=B + H)])
    assert [s.bucket_shard_count(B) for s in (store, four, eight)] == [4, 4, 4]
    assert eight.bucket_shard_count(B + H) == 8
    assert store.bucket_shard_count(B + 2 * H) == 0, "after the first recorded bucket, no record: no sample"
    assert store.bucket_shard_count(B - H) == SAMPLE_SHARDS, "before it: perhaps written before counts were"
    four.put_samples([sample("early", bucket=B - 5 * H)])
    assert store.bucket_shard_count(B - 2 * H) == 0 and store.bucket_shard_count(B - 6 * H) == SAMPLE_SHARDS
    by_shard = [sorted(x.event_id for x in eight.shard_samples(B, k)) for k in range(4)]
    ids = [f"e{i}" for i in range(20)] + [f"f{i}" for i in range(20)]
    assert by_shard == [sorted(e for e in ids if shard_of(e, 4) == k) for k in range(4)]
    assert [x.event_id for x in store.bucket_samples(B)] == [e for k in range(4) for e in by_shard[k]]
    assert list(store.shard_samples(B, 5)) == []


def test_a_partial_counts_once_wholly_written_and_a_second_write_changes_nothing(store: BillingStore) -> None:
    one = [OrgAggregate("a", B, {1024: Decimal("1.5")}, 2),
           OrgAggregate("b", B, {512: Decimal(3), 4096: Decimal(1)}, 4)]
    assert store.partial_shards(B) == frozenset() and store.partials(B) == []
    store.put_partial(B, 3, one)
    store.put_partial(B, 0, [])
    store.put_partial(B, 3, one)
    assert store.partial_shards(B) == frozenset({0, 3}) and store.partial_shards(B + H) == frozenset()
    assert store.partials(B) == one


def test_a_big_partial_reads_back_whole(store: BillingStore) -> None:
    many = [OrgAggregate(f"org-{i:05d}", B, {1024: Decimal(i) / 1000}, 1) for i in range(2_345)]
    store.put_partial(B, 1, many)
    assert store.partials(B) == many


def test_claim_fanout_once_then_again_after_the_retry_interval(store: BillingStore) -> None:
    assert store.claim_fanout(B, now=1000, every=600)
    assert not store.claim_fanout(B, now=1599, every=600)
    assert store.claim_fanout(B + H, now=1599, every=600), "per bucket"
    assert store.claim_fanout(B, now=1600, every=600)
    assert not store.claim_fanout(B, now=1601, every=600)
