"""The free tier's services on the in-memory adapters: pushes and their backoff, the pending summary,
late ticks, grants racing, and the metric points of a round."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.credits import (
    FREE_SLOT_SECONDS,
    MICRO,
    PUSH_ALARM_ATTEMPTS,
    FreeTick,
    next_push_at,
    slot_of,
    to_micro,
)
from chalicelib.core.telemetry import credit_points
from chalicelib.credit_ports import CellPusher
from chalicelib.services.credits import free_status, grant_credits, org_credits, run_spend_pass
from chalicelib.services.halt_push import credit_round, push_notices
from chalicelib.settings import Settings, load_settings

T0 = 1_795_564_800


class Cells(CellPusher):
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.raises: set[str] = set()
        self.got: list[tuple[str, str]] = []

    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        if base_url in self.raises:
            raise OSError("connection reset")
        self.got.append((base_url, path))
        return base_url not in self.down


@pytest.fixture
def settings() -> Settings:
    return load_settings({"FREE_TIER_SEED_CENTS": "1", "EVENT_SECRET": "x"})


def ft(event: str, ts: int, micro: int, org: str = "o1", late: bool = False) -> FreeTick:
    slot = slot_of(ts)
    return FreeTick(event, org, slot, micro, slot + 10**7, late)


def registered(*urls: str) -> MemoryCells:
    cells = MemoryCells()
    for i, url in enumerate(urls):
        cells.put_cell_status(CellStatus(f"c{i}", "edge", False, 0, 0, 0, T0, T0, url))
    cells.put_cell_status(CellStatus("no-url", "cell", True, 0, 0, 0, T0, T0))
    return cells


def test_to_micro_keeps_every_digit_to_the_micro_cent_and_rounds_finer_half_even() -> None:
    assert to_micro(Decimal("0.033333")) == 33_333
    assert to_micro(Decimal("0.0000005")) == 0 and to_micro(Decimal("0.0000015")) == 2
    assert to_micro(None) == 0 and to_micro(3) == 3 * MICRO


def test_small_spend_is_published_as_pending_and_written_when_its_slot_closes(settings: Settings) -> None:
    store, credits = MemoryStore(), MemoryCredits()
    credits.put_free_ticks([ft("a", T0 + 5, 100_000), ft("b", T0 + 9, 50_000)])
    first = run_spend_pass(store, credits, settings, T0 + 10)
    assert (first.written, first.pending) == (0, 1), "far from 0 and no slot closing: no account write"
    shown = org_credits(credits, settings, "o1")
    assert (shown.balance_cents, shown.pending_cents) == (Decimal("0.85"), Decimal("0.15"))
    later = run_spend_pass(store, credits, settings, T0 + FREE_SLOT_SECONDS + 181)
    assert (later.written, later.pending) == (1, 0)
    assert credits.accounts(["o1"])["o1"].spent_micro == 150_000
    assert org_credits(credits, settings, "o1").balance_cents == Decimal("0.85")
    assert store.cursor("credits") == slot_of(T0) + FREE_SLOT_SECONDS


def test_late_ticks_are_counted_once_by_the_late_step(settings: Settings) -> None:
    store, credits = MemoryStore(), MemoryCredits()
    credits.put_free_ticks([ft("old", T0 - 7200, 400_000, late=True)])
    assert run_spend_pass(store, credits, settings, T0).late == 1
    credits.put_free_ticks([ft("old", T0 - 7200, 400_000, late=True)])  # a replay: already stored
    assert run_spend_pass(store, credits, settings, T0 + 60).late == 0
    assert credits.accounts(["o1"])["o1"].spent_micro == 400_000


def test_pushes_back_off_alarm_and_end_when_every_cell_acked(settings: Settings) -> None:
    store, credits, pusher = MemoryStore(), MemoryCredits(), Cells()
    cells = registered("http://a", "http://b", "http://c")
    pusher.down, pusher.raises = {"http://b"}, {"http://c"}
    credits.put_free_ticks([ft("x", T0, 2 * MICRO)])
    body = credit_round(store, credits, cells, pusher, settings, T0)
    assert body["pass"]["halted"] == ["o1"] and (body["push"]["acked"], body["push"]["halts"]) == (1, 1)
    (notice,) = credits.notices()
    assert (notice.acked, notice.attempts, notice.next_at) == (frozenset({"c0"}), 1, next_push_at(1, T0))
    assert push_notices(credits, cells, pusher, T0 + 10).pushed == 0, "not before its backoff"
    now = T0
    for _ in range(PUSH_ALARM_ATTEMPTS - 1):
        now = credits.notices()[0].next_at
        result = push_notices(credits, cells, pusher, now)
    assert result.failing == ["o1"] and credit_points({"push": result.body()})[2].value == 1
    assert all(url != "http://a" for url, _ in pusher.got[1:]), "an acked cell is not pushed again"
    pusher.down, pusher.raises = set(), set()
    done = push_notices(credits, cells, pusher, credits.notices()[0].next_at)
    assert (done.done, credits.notices()) == (1, [])
    assert next_push_at(20, 0) == 900


def test_grants_resume_once_and_the_status_section(settings: Settings) -> None:
    store, credits = MemoryStore(), MemoryCredits()
    credits.put_free_ticks([ft("x", T0, 2 * MICRO), ft("y", T0, 10, org="o2")])
    run_spend_pass(store, credits, settings, T0)
    with pytest.raises(ValueError, match="positive"):
        grant_credits(credits, settings, "o1", Decimal(0), "k", T0)
    small = grant_credits(credits, settings, "o1", Decimal("0.5"), "k1", T0)
    assert (small.applied, small.resumed, small.balance_cents) == (True, False, Decimal(0)), "still owes 0.5"
    enough = grant_credits(credits, settings, "o1", Decimal(1), "k2", T0)
    assert (enough.resumed, enough.balance_cents) == (True, Decimal("0.5"))
    status = free_status(credits)
    assert status["halted_orgs"] == [] and status["notices_outstanding"] == 1
    assert [b["org_id"] for b in status["lowest_balances"]] == ["o1"], "o2's spend is pending: no account yet"


def test_the_pending_summary_grows_with_the_fleet_and_a_reader_always_finds_a_whole_one(settings: Settings) -> None:
    from chalicelib.core.credits import pending_shard_count

    assert [pending_shard_count(n) for n in (0, 1, 32, 33, 64, 65, 10**9)] == [1, 1, 1, 2, 2, 4, 1024]
    store, credits = MemoryStore(), MemoryCredits()
    credits.put_free_ticks([ft(f"e{i}", T0 + 5, 1_000, org=f"org{i}") for i in range(40)])
    run_spend_pass(store, credits, settings, T0 + 10)
    assert credits.pending_layout() == 2 and credits.pending("org7") is not None
    credits.put_free_ticks([ft("x", T0 + 6, 1_000, org="org7")])
    run_spend_pass(store, credits, settings, T0 + 70)
    assert credits.pending("org7").micro == 2_000  # type: ignore[union-attr]
    closed = run_spend_pass(store, credits, settings, T0 + FREE_SLOT_SECONDS + 181)
    assert closed.written == 40 and credits.pending("org7") is None and credits.pending_layout() == 1
