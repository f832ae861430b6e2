"""The cutover run's ground truth and seam accounting (sim/truth.py): pure, exact, integer micro-units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sim.truth import (
    Attributed,
    MeterEvent,
    PlanChange,
    Segment,
    attribute,
    gb_us_per_bucket,
    owed,
    seam_lines,
)

US = 1_000_000
T0 = 1_796_083_200


def test_truth_counts_only_pro_time_and_splits_meters_by_mode() -> None:
    segments = [Segment("s1", "leg", 4096, T0 * US, (T0 + 30) * US + 7),  # legacy: seconds on the 4gb meter
                Segment("s2", "uni", 2048, (T0 + 5) * US, (T0 + 25) * US),  # unified at a size without a tier
                Segment("s3", "up", 1024, T0 * US, (T0 + 40) * US)]  # free, then pro from T0 + 20
    changes = [PlanChange("leg", 0, "pro"), PlanChange("uni", 0, "pro"), PlanChange("up", 0, "free"),
               PlanChange("up", (T0 + 20) * US, "pro")]
    modes = {"leg": "legacy", "uni": "unified", "up": "unified"}
    got = owed(segments, changes, modes, (T0 + 100) * US)  # type: ignore[arg-type]
    assert got == {("leg", "sandbox_compute_sandbox_4gb"): 30 * US + 7,
                   ("uni", "sandbox_compute_sandbox_overage"): 2 * 20 * US,
                   ("up", "sandbox_compute_sandbox_overage"): 1 * 20 * US}
    per_bucket = gb_us_per_bucket(segments, changes, 10, (T0 + 100) * US)
    assert sum(per_bucket.values()) == 4096 * (30 * US + 7) + 2048 * 20 * US + 1024 * 20 * US
    assert per_bucket[T0 + 30] == 4096 * 7 + 1024 * 10 * US


def test_a_size_that_is_not_a_whole_gb_is_refused_rather_than_rounded() -> None:
    with pytest.raises(ValueError):
        owed([Segment("s", "u", 1536, 0, US)], [PlanChange("u", 0, "pro")], {"u": "unified"}, US)


def test_identifiers_say_who_billed_and_the_seam_lines_catch_the_wrong_side() -> None:
    cell = attribute(MeterEvent("cell:cell-a:acme:100:m", "m", "cus", Decimal("5"), False))
    late = attribute(MeterEvent("acme:110:m:late:abc", "m", "cus", Decimal("1"), False))
    assert cell == Attributed("cell:cell-a", "acme", 100, "m", Decimal(5), False)
    assert late.side == "edge" and late.late and late.bucket_start == 110
    twice = Attributed("cell:cell-a", "acme", 110, "m", Decimal(2), False)  # a cell billing a bucket from T
    [line] = seam_lines({("acme", "m"): 8 * US}, [cell, late, twice], {("acme", "m"): Decimal(8)}, t=110)
    assert line.difference == 0 and line.wrong_side == Decimal(2)
    assert line.cells_before_t == Decimal(7) and line.edge_from_t == Decimal(1)
