"""One contract suite, run on the memory, SQLite and PostgreSQL stores (a real server): same answers."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from cellkit.core.ticker import Sandbox
from cellkit.core.usage import OrgRow, ScaleEvent, UsageRow
from cellkit.ports import Billable, CellStore, SpoolItem

US = 1_000_000


def sbx(sid: str = "s1", worker: str = "w1", last: int = 100) -> Sandbox:
    return Sandbox(sid, "o1", "pro", worker, 1024, 1, 100, last)


def test_spool_order_dedupe_delete_and_aside(any_store: CellStore) -> None:
    any_store.spool_put([SpoolItem(f"e{i}", f'{{"id":"e{i}"}}') for i in range(5)])
    any_store.spool_put([SpoolItem("e1", '{"id":"e1","changed":true}'), SpoolItem("e5", '{"id":"e5"}')])
    assert [i.id for i in any_store.spool_head(10)] == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert any_store.spool_head(10)[1].body == '{"id":"e1"}'  # first write wins
    assert any_store.spool_depth() == 6
    any_store.spool_delete(["e0", "e2", "missing"])
    any_store.spool_set_aside(["e3"], "400: bad", 77)
    assert [i.id for i in any_store.spool_head(2)] == ["e1", "e4"]
    assert any_store.spool_depth() == 3
    aside = any_store.aside()
    assert [(a.id, a.body, a.reason, a.at) for a in aside] == [("e3", '{"id":"e3"}', "400: bad", 77)]


def test_transaction_rolls_back_everything(any_store: CellStore) -> None:
    with pytest.raises(RuntimeError), any_store.transaction() as tx:
        assert tx.insert_sandbox(sbx())
        tx.spool_put([SpoolItem("t1", "{}")])
        raise RuntimeError("crash mid-transaction")
    assert any_store.sandbox("s1") is None
    assert any_store.spool_depth() == 0


def test_sandbox_rows_change_only_by_compare_and_set(any_store: CellStore) -> None:
    with any_store.transaction() as tx:
        assert tx.insert_sandbox(sbx())
        assert not tx.insert_sandbox(sbx(worker="w2"))  # a second start of the same id
    with any_store.transaction() as tx:
        locked = tx.sandbox_for_update("s1")
        assert locked == sbx() and tx.sandbox_for_update("missing") is None
        assert tx.change_sandbox(sbx(), sbx(last=200))
        assert not tx.change_sandbox(sbx(), sbx(last=300))  # stale cursor
        # Stale in any other column (a resize committed at the same cursor) fails as well.
        assert not tx.change_sandbox(replace(sbx(last=200), memory_mb=4096), sbx(last=300))
        assert not tx.change_sandbox(sbx(worker="w2", last=200), sbx(last=300))
        with pytest.raises(ValueError, match="rename"):
            tx.change_sandbox(sbx(last=200), sbx(sid="s2"))
    assert any_store.sandbox("s1") == sbx(last=200)
    assert [s.sandbox_id for s in any_store.running_sandboxes("w1")] == ["s1"]
    assert any_store.running_sandboxes("w2") == []


def test_scale_events_overlap_query(any_store: CellStore) -> None:
    with any_store.transaction() as tx:
        tx.open_scale_event(ScaleEvent("a", "s1", "o1", 1024, 1, 10 * US, 20 * US))
        tx.open_scale_event(ScaleEvent("b", "s1", "o1", 2048, 1, 20 * US))
        tx.open_scale_event(ScaleEvent("c", "s2", "o2", 1024, 1, 30 * US, 31 * US))
    assert [e.event_id for e in any_store.scale_events(0, 10 * US)] == []
    assert [e.event_id for e in any_store.scale_events(15 * US, 25 * US)] == ["a", "b"]
    assert [e.event_id for e in any_store.scale_events(20 * US, 100 * US)] == ["b", "c"]
    with any_store.transaction() as tx:
        assert not tx.open_scale_event(ScaleEvent("c", "s9", "o9", 1024, 1, 50 * US))  # the id is taken
        tx.close_scale_events("s1", 40 * US)
    assert [e.ended_us for e in any_store.scale_events(0, 100 * US)] == [20 * US, 40 * US, 31 * US]
    assert any_store.first_scale_event_us() == 10 * US
    # An event closed where it opened bills nothing: it goes, and its id is free for the next event there.
    with any_store.transaction() as tx:
        assert tx.open_scale_event(ScaleEvent("d", "s3", "o1", 1024, 1, 60 * US))
        tx.close_scale_events("s3", 60 * US)
        assert tx.open_scale_event(ScaleEvent("d", "s3", "o1", 2048, 1, 60 * US))
    assert [(e.event_id, e.memory_mb, e.ended_us) for e in any_store.scale_events(55 * US, 100 * US)] == [
        ("d", 2048, None)]


def test_orgs_usage_billable_cursors(any_store: CellStore) -> None:
    any_store.put_org(OrgRow("o1", "pro", "unified", "cus_1", 65536))
    any_store.put_org(OrgRow("o2"))
    any_store.put_org(OrgRow("o1", "pro", "legacy", "cus_9"))
    assert any_store.orgs() == {"o1": OrgRow("o1", "pro", "legacy", "cus_9"), "o2": OrgRow("o2")}
    assert list(any_store.orgs(["o2", "zz"])) == ["o2"]

    any_store.put_usage([UsageRow("o1", 3600, "m", Decimal("1.000001")), UsageRow("o1", 0, "m", Decimal("2"))])
    any_store.put_usage([UsageRow("o1", 3600, "m", Decimal("123456789.123456"))])
    assert any_store.usage(0, 7200) == [UsageRow("o1", 0, "m", Decimal("2")),
                                        UsageRow("o1", 3600, "m", Decimal("123456789.123456"))]

    rows = [Billable("i2", "o1", 3600, "m", Decimal("0.000001")), Billable("i1", "o1", 0, "m", Decimal("5.5"))]
    assert any_store.put_billable(rows) == 2
    assert any_store.put_billable([Billable("i1", "o1", 0, "m", Decimal("99"))]) == 0
    assert [b.identifier for b in any_store.billable("pending", 10)] == ["i1", "i2"]
    assert any_store.billable("pending", 10)[0].value == Decimal("5.5")
    any_store.mark_billable("i1", "sent", "sent", 9)
    assert any_store.count_billable("pending") == 1 and any_store.count_billable("sent") == 1
    assert any_store.billable("sent", 1)[0].detail == "sent"

    assert any_store.cursor("billed_through") is None
    any_store.set_cursor("billed_through", 7200)
    any_store.set_cursor("billed_through", 10800)
    assert any_store.cursor("billed_through") == 10800


def test_aside_replay_and_discard(any_store: CellStore) -> None:
    any_store.spool_put([SpoolItem(f"e{i}", f'{{"id":"e{i}"}}') for i in range(4)])
    any_store.spool_set_aside(["e0", "e1", "e2"], "400: bad", 5)
    assert any_store.aside_replay(["e1", "e1", "missing"]) == 1
    assert [i.id for i in any_store.spool_head(10)] == ["e3", "e1"]  # back at the tail
    assert any_store.spool_head(10)[1].body == '{"id":"e1"}'
    assert any_store.aside_discard(["e2", "e1", "missing"]) == 1  # e1 is in the spool, not aside
    assert [a.id for a in any_store.aside()] == ["e0"] and any_store.spool_depth() == 2


def test_lease_take_renew_expire_release(any_store: CellStore) -> None:
    assert any_store.lease_acquire("fwd", "a", 100, 30)
    assert not any_store.lease_acquire("fwd", "b", 129, 30)  # held until 130
    assert any_store.lease_acquire("fwd", "a", 120, 30)  # renewed until 150
    assert not any_store.lease_acquire("fwd", "b", 149, 30)
    assert any_store.lease_acquire("fwd", "b", 150, 30)  # expired: taken over
    assert not any_store.lease_acquire("fwd", "a", 151, 30)
    assert any_store.lease_acquire("other", "a", 151, 30)  # names are independent
    any_store.lease_release("fwd", "a")  # not a's: no effect
    assert not any_store.lease_acquire("fwd", "a", 152, 30)
    assert any_store.lease_holder("fwd") == "b" and any_store.lease_holder("none") is None
    assert not any_store.lease_acquire("fwd", "c", 152, 30, from_holder="a")  # a does not hold it
    assert any_store.lease_acquire("fwd", "c", 152, 30, from_holder="b")  # b is known dead: taken from it
    any_store.lease_release("fwd", "c")
    assert any_store.lease_acquire("fwd", "a", 152, 30)


def test_billable_transition_is_a_compare_and_set(any_store: CellStore) -> None:
    any_store.put_billable([Billable("i1", "o1", 0, "m", Decimal("1")), Billable("i2", "o1", 0, "m", Decimal("2"))])
    any_store.mark_billable("i1", "failed", "No such customer", 5)
    assert not any_store.transition_billable("i2", "failed", "pending", "retry", 6)  # i2 is pending, not failed
    assert any_store.transition_billable("i1", "failed", "pending", "operator retry", 6)
    assert not any_store.transition_billable("i1", "failed", "pending", "again", 7)
    assert any_store.transition_billable("i2", "pending", "voided", "test org", 8)
    assert not any_store.transition_billable("missing", "pending", "voided", "x", 8)
    assert [(b.identifier, b.detail) for b in any_store.billable("pending", 10)] == [("i1", "operator retry")]
    assert any_store.count_billable("voided") == 1 and any_store.count_billable("failed") == 0
