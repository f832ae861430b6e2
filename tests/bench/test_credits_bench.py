"""bench/credits counts what it says: the naive design's two writes per tick, the edge's one plus little."""

from __future__ import annotations

from bench.credits import FreeFleet, free_cost


def test_the_free_bench_counts_one_write_per_tick_plus_the_spend_and_two_for_the_naive_design() -> None:
    fleet = FreeFleet(orgs=3, sandboxes_per_org=3, minutes=4)
    edge, naive = free_cost(fleet, "edge"), free_cost(fleet, "naive")
    assert edge["ticks"] == naive["ticks"] == 3 * 3 * 3 * 4
    assert naive["wu_per_tick"] == 2.0, "a conditional ledger put and a balance write per tick"
    # One write per tick, plus the summary (one item per pass, and its layout once) and the cursor's moves
    # (its first, and past the slot before T0): no org's slot closes in four minutes, no account is written.
    assert edge["wu"] == edge["ticks"] + 4 + 1 + 2
    assert edge["requests"]["PutItem"] == 7 and "UpdateItem" not in edge["requests"]
