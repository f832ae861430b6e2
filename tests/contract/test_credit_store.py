"""One suite, two CreditStores: the in-memory one must answer exactly as the DynamoDB one (moto)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb.credits import DynamoCredits
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.core.credits import (
    FREE_SHARDS,
    Change,
    FreeTick,
    HaltedOrg,
    Pending,
    apply_late,
    apply_slots,
    crc_shard,
    end_credits,
    grant,
    new_account,
)
from chalicelib.credit_ports import CreditStore
from chalicelib.ports import StoreRejected, StoreUnavailable
from tests.conftest import PREFIX

SLOT = 1_700_000_400


@pytest.fixture(params=["memory", "dynamodb"])
def credits(request: pytest.FixtureRequest) -> CreditStore:
    if request.param == "memory":
        return MemoryCredits()
    dynamodb: Any = request.getfixturevalue("dynamodb")
    return DynamoCredits(dynamodb, PREFIX)


def tick(event: str, org: str = "o1", cost: int = 1_500, slot: int = SLOT, late: bool = False) -> FreeTick:
    return FreeTick(event, org, slot, cost, slot + 999_999, late)


def test_on_time_ticks_are_idempotent_puts_read_back_per_slot(credits: CreditStore) -> None:
    assert credits.put_free_ticks([tick("e1"), tick("e2", "o2", 7), tick("e1")]) == 0
    credits.put_free_ticks([tick("e1"), tick("e3", slot=SLOT + 600)])
    got = sorted((t.event_id, t.org_id, t.cost_micro, t.late) for t in credits.slot_ticks(SLOT))
    assert got == [("e1", "o1", 1_500, False), ("e2", "o2", 7, False)]
    assert [t.event_id for t in credits.slot_ticks(SLOT + 600)] == ["e3"]
    assert credits.late_free_ticks() == []


def test_a_slot_reads_back_every_tick_of_every_shard_whole(credits: CreditStore) -> None:
    """The spend pass reads a slot's shards at once, and only the attributes a tick needs: every field of
    every tick comes back, from every shard, none twice."""
    ticks = [tick(f"ev-{i:03d}", f"org-{i % 5}", 1_000 + i, late=i % 9 == 0) for i in range(60)]
    credits.put_free_ticks(ticks)
    assert len({crc_shard(t.event_id, FREE_SHARDS) for t in ticks}) == FREE_SHARDS
    assert sorted(credits.slot_ticks(SLOT), key=lambda t: t.event_id) == ticks


def test_a_late_tick_enters_the_late_index_once_and_never_when_it_replays_a_stored_one(credits: CreditStore) -> None:
    credits.put_free_ticks([tick("on")])
    assert credits.put_free_ticks([tick("on", late=True), tick("l1", late=True)]) == 1
    assert credits.put_free_ticks([tick("l1", late=True)]) == 0
    assert [t.event_id for t in credits.late_free_ticks()] == ["l1"]
    by_id = {t.event_id: t.late for t in credits.slot_ticks(SLOT)}
    assert by_id == {"on": False, "l1": True}, "a late-written tick says so in its slot"


def test_commit_is_a_compare_and_set_on_the_version(credits: CreditStore) -> None:
    account = new_account("o1", 500)
    change = apply_slots(account, {SLOT: 2_000_000}, SLOT, 10)
    assert credits.commit_account(change, 0)
    assert not credits.commit_account(change, 0), "a second create loses"
    stored = credits.accounts(["o1", "nobody"])
    assert list(stored) == ["o1"]
    a = stored["o1"]
    assert (a.version, a.spent_micro, dict(a.applied), a.applied_from) == (1, 2_000_000, {SLOT: 2_000_000}, SLOT)
    assert a.balance_micro == 498_000_000
    assert not credits.commit_account(apply_slots(a, {SLOT: 3_000_000}, SLOT, 11), 0)
    assert credits.commit_account(apply_slots(a, {SLOT: 3_000_000}, SLOT, 11), 1)
    assert credits.accounts(["o1"])["o1"].spent_micro == 3_000_000
    assert [x.org_id for x in credits.all_accounts()] == ["o1"]


def test_a_halt_lists_the_org_and_queues_its_notice_atomically(credits: CreditStore) -> None:
    account = new_account("o1", 1)
    halt = apply_slots(account, {SLOT: 1_000_000}, SLOT, 50)
    assert halt.halts and credits.commit_account(halt, 0)
    assert credits.halted_orgs() == [HaltedOrg("o1", 50)]
    (notice,) = credits.notices()
    assert (notice.kind, notice.seq, notice.acked, notice.attempts) == ("halt", 1, frozenset(), 0)
    stored = credits.accounts(["o1"])["o1"]
    resume = grant(stored, 5, 60)
    assert resume.resumes and credits.commit_account(resume, stored.version, [], grant_key="k1")
    assert credits.halted_orgs() == []
    (notice,) = credits.notices()
    assert (notice.kind, notice.seq) == ("resume", 2)
    assert credits.grant_recorded("o1", "k1") and not credits.grant_recorded("o1", "k2")
    again = credits.accounts(["o1"])["o1"]
    assert not credits.commit_account(grant(again, 5, 61), again.version, [], grant_key="k1"), "a key grants once"
    assert credits.accounts(["o1"])["o1"].granted_micro == 5


def test_late_commit_clears_each_mark_once_and_all_or_nothing(credits: CreditStore) -> None:
    credits.put_free_ticks([tick("l1", late=True), tick("l2", late=True, cost=5)])
    late = credits.late_free_ticks()
    account = new_account("o1", 500)
    change = apply_late(account, sum(t.cost_micro for t in late), 10)
    assert credits.commit_account(change, 0, late)
    assert credits.late_free_ticks() == []
    stored = credits.accounts(["o1"])["o1"]
    assert stored.spent_micro == 1_505
    assert not credits.commit_account(apply_late(stored, 1_505, 11), stored.version, late), "marks already cleared"
    assert credits.accounts(["o1"])["o1"].version == stored.version
    with pytest.raises(StoreRejected):
        credits.commit_account(apply_late(stored, 1, 12), stored.version, [late[0], late[0]])


def test_push_outcomes_apply_to_the_current_notice_only(credits: CreditStore) -> None:
    halt = apply_slots(new_account("o1", 1), {SLOT: 1_000_000}, SLOT, 50)
    credits.commit_account(halt, 0)
    (notice,) = credits.notices()
    assert credits.record_push(replace(notice, attempts=1, next_at=80), {"cell-a"}, done=False)
    (saved,) = credits.notices()
    assert (saved.acked, saved.attempts, saved.next_at) == (frozenset({"cell-a"}), 1, 80)
    ended = end_credits(credits.accounts(["o1"])["o1"], 90)
    credits.commit_account(ended, 1)
    assert not credits.record_push(notice, {"cell-b"}, done=True), "a newer notice (the resume) replaced it"
    (newer,) = credits.notices()
    assert newer.kind == "resume" and credits.record_push(newer, set(), done=True)
    assert credits.notices() == []


def test_pending_shards_are_replaced_whole_and_read_through_the_layout(credits: CreditStore) -> None:
    from chalicelib.core.credits import crc_shard

    assert credits.pending("o1") is None and credits.pending_layout() == 0 and credits.pending_shards(2) == {}
    credits.put_pending(2, crc_shard("o1", 2), {"o1": Pending(12, 4)})
    assert credits.pending("o1") is None, "layout 2 is not the readers' yet"
    credits.set_pending_layout(2)
    assert credits.pending_layout() == 2 and credits.pending("o1") == Pending(12, 4)
    credits.put_pending(1, 0, {"o2": Pending(1, 0)})
    assert credits.pending_shards(2) == {crc_shard("o1", 2): {"o1": Pending(12, 4)}}
    assert credits.pending_shards(1) == {0: {"o2": Pending(1, 0)}}
    credits.put_pending(2, crc_shard("o1", 2), {})
    assert credits.pending("o1") is None


def test_a_plain_change_without_side_effects(credits: CreditStore) -> None:
    assert credits.commit_account(Change(new_account("o9", 3)), 0)
    assert credits.accounts(["o9"])["o9"].seed_micro == 3_000_000


def test_one_shard_failing_fails_the_whole_slot_read(dynamodb: Any) -> None:
    """A slot read with a shard missing would under-count the org's spend: one shard's throttling fails the
    read (StoreUnavailable: the pass retries next minute), whichever shard it is."""
    credits = DynamoCredits(dynamodb, PREFIX)
    credits.put_free_ticks([tick(f"ev-{i}") for i in range(20)])
    real = credits._query

    def throttled_on_shard_2(**kw: Any) -> Any:
        if kw["ExpressionAttributeValues"][":pk"]["S"].endswith("#2"):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")
        return real(**kw)

    credits._query = throttled_on_shard_2  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        credits.slot_ticks(SLOT)
