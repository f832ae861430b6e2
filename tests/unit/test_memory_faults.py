"""The memory store's fault hooks: fail the k-th call, before or after its write; count calls; crash."""

from __future__ import annotations

import pytest

from chalicelib.adapters.memory.faults import Crash
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.ports import StoreUnavailable


def row(row_id: str) -> OutboxRow:
    from decimal import Decimal

    return OutboxRow(row_id, "o", 0, 3600, "m", Decimal(1), "first", "pending")


def test_the_nth_call_from_arming_fails_before_writing() -> None:
    store = MemoryStore()
    store.create_outbox_rows([row("warm")])
    store.faults.fail_on("create_outbox_rows", nth=2)
    assert store.create_outbox_rows([row("a")]) == 1
    with pytest.raises(StoreUnavailable, match="call 3 of create_outbox_rows, before"):
        store.create_outbox_rows([row("b")])
    assert store.get_outbox_row("b") is None
    assert store.create_outbox_rows([row("b")]) == 1, "one call only"


def test_a_failure_after_the_write_keeps_the_write() -> None:
    store = MemoryStore()
    store.faults.fail_on("create_outbox_rows", when="after", exc=TimeoutError("answer lost"))
    with pytest.raises(TimeoutError):
        store.create_outbox_rows([row("a")])
    assert store.get_outbox_row("a") == row("a")


def test_times_none_fails_every_call_until_cleared() -> None:
    store = MemoryStore()
    store.faults.fail_on("get_orgs", times=None)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            store.get_orgs(["o"])
    store.faults.clear()
    assert store.get_orgs(["o"]) == {}


def test_a_crash_kills_the_handle_but_not_the_tables() -> None:
    store = MemoryStore()
    crashing = store.handle()
    crashing.faults.fail_on("put_org", when="after", exc=Crash)
    with pytest.raises(Crash):
        crashing.put_org(Org("a"))
    with pytest.raises(Crash, match="crashed earlier"):
        crashing.release_lease("rollup", "me")
    assert store.get_org("a") == Org("a"), "the write before the crash is durable; other handles work"
    crashing.faults.clear()
    assert crashing.get_org("a") == Org("a")


def test_calls_are_counted_per_method_and_handle() -> None:
    store = MemoryStore()
    other = store.handle()
    store.late_slots(0)
    store.late_slots(0)
    other.late_slots(0)
    assert (store.faults.calls("late_slots"), store.faults.calls("late_slot_samples")) == (2, 0)
    assert other.faults.calls("late_slots") == 1


def test_hooks_may_run_any_action_and_names_are_checked() -> None:
    store = MemoryStore()
    seen: list[int] = []
    store.faults.on("cursor", lambda: seen.append(1), nth=1, times=2)
    for _ in range(3):
        store.cursor("x")
    assert seen == [1, 1]
    with pytest.raises(ValueError, match="not a method"):
        store.faults.fail_on("create_outbox_row")
    with pytest.raises(ValueError):
        store.faults.fail_on("cursor", nth=0)
