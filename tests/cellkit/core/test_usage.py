from __future__ import annotations

from decimal import Decimal

from cellkit.core.usage import (
    OVERAGE_METER,
    TIER_METERS,
    OrgRow,
    ScaleEvent,
    clip_us,
    gb_seconds,
    hour_usage,
    mb_us_per_org,
    meter_identifier,
)

H = 3600
T0 = 1795564800
US = 1_000_000


def ev(start_s: float, end_s: float | None, org: str = "o1", mb: int = 1024, sid: str = "s1") -> ScaleEvent:
    end = None if end_s is None else int(end_s * US)
    return ScaleEvent(f"{sid}:{start_s}", sid, org, mb, 1, int(start_s * US), end)


def test_clip_at_both_edges() -> None:
    f, t = T0 * US, (T0 + H) * US
    assert clip_us(ev(T0 - 100, T0 + 100), f, t, 0) == 100 * US  # starts before the window
    assert clip_us(ev(T0 + H - 100, T0 + H + 500), f, t, 0) == 100 * US  # ends after it (the seed's defect 2)
    assert clip_us(ev(T0 - 5, T0 + H + 5), f, t, 0) == H * US  # spans it
    assert clip_us(ev(T0 + 10, T0 + 20), f, t, 0) == 10 * US  # inside
    assert clip_us(ev(T0 + H, T0 + H + 9), f, t, 0) == 0  # after
    assert clip_us(ev(T0 - 9, T0), f, t, 0) == 0  # before
    # An open event runs until now, and never past the window.
    assert clip_us(ev(T0 + 60, None), f, t, (T0 + 120) * US) == 60 * US
    assert clip_us(ev(T0 + 60, None), f, t, (T0 + 2 * H) * US) == (H - 60) * US


def test_mb_us_per_org_sums_integers() -> None:
    events = [ev(T0, T0 + 10, "a", 2048), ev(T0 + 5, T0 + 7, "a", 1024, "s2"), ev(T0, T0 + 1, "b", 512)]
    assert mb_us_per_org(events, T0 * US, (T0 + H) * US, 0) == {"a": 2048 * 10 * US + 1024 * 2 * US, "b": 512 * US}


def test_gb_seconds_rounds_once_half_even() -> None:
    assert gb_seconds(1024 * 3 * US) == Decimal("3.000000")
    assert gb_seconds(1) == Decimal("0.000000")
    assert gb_seconds(512) == Decimal("0.000000")  # 0.00000048828125 -> 0
    assert gb_seconds(1024 * 1_500_000) == Decimal("1.500000")


def test_hour_usage_legacy_unified_free_and_unpriced() -> None:
    orgs = {
        "leg": OrgRow("leg", "pro", "legacy", "cus_1"),
        "uni": OrgRow("uni", "pro", "unified", "cus_2"),
        "free": OrgRow("free", "free"),
    }
    events = [
        ev(T0 - 30, T0 + 60, "leg", 4096),  # 60 s in the hour at 4 GB
        ev(T0 + 60, T0 + H + 99, "leg", 8192, "s2"),  # H-60 s at 8 GB
        ev(T0 + 100, T0 + 400, "uni", 2048, "s3"),  # 300 s x 2 GB = 600 GB-s
        ev(T0, T0 + 10, "free", 1024, "s4"),
        ev(T0, T0 + 10, "leg", 3000, "s5"),  # no tier meter prices 3000 MB
    ]
    rows, unpriced = hour_usage(events, orgs, T0, H, 0)
    got = {(r.org_id, r.meter): r.value for r in rows}
    assert got == {
        ("leg", TIER_METERS[4096]): Decimal("60.000000"),
        ("leg", TIER_METERS[8192]): Decimal(H - 60),
        ("uni", OVERAGE_METER): Decimal("600.000000"),
    }
    assert unpriced == [("leg", 3000)]


def test_meters_match_the_edge_pricing_table() -> None:
    from chalicelib.core import pricing

    assert {mb: t.meter for mb, t in pricing.TIERS.items()} == TIER_METERS
    assert pricing.OVERAGE_METER == OVERAGE_METER


def test_identifier_is_the_cells_own() -> None:
    ident = meter_identifier("cell-a", "org-1", T0, OVERAGE_METER)
    assert ident == f"cell:cell-a:org-1:{T0}:{OVERAGE_METER}"
    assert ident != f"org-1:{T0}:{OVERAGE_METER}"  # never collides with the edge's identifier
