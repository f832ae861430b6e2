"""The cell-kit benchmarks' logic on small inputs (the figures themselves come from bench/)."""

from __future__ import annotations

import statistics
from decimal import Decimal

from bench.cellfleet import simulate


def test_fleet_parity_is_exact_with_the_kit_and_shows_the_seed_defects() -> None:
    out = simulate(cells=2, orgs_per_cell=4, per_org=2, hours=3, seed=5)
    assert out.drifts and max(out.drifts) < Decimal("0.001")
    assert out.retries > 0  # the outages happened and were ridden out
    # Whole-second ticks lose about half a second per 20 s tick: the seed's 2.5 % shows up.
    assert Decimal("0.01") < statistics.median(out.seed_ticker_drifts) < Decimal("0.05")
    assert statistics.median(out.seed_drifts) > statistics.median(out.seed_ticker_drifts)
