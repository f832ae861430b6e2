"""The catalog plan is pure: what to create given what Stripe has."""

from __future__ import annotations

from chalicelib.core.catalog import (
    CatalogEntry,
    StripeCatalog,
    StripePrice,
    catalog_entries,
    plan_catalog,
    price_specs,
)
from chalicelib.core.pricing import ALL_METERS, CATALOG_KEYS, OVERAGE_METER, TIERS

EMPTY = StripeCatalog(meters={}, product_exists=False, prices={})


def full_stripe() -> StripeCatalog:
    meters = {name: f"mtr_{name}" for name in ALL_METERS}
    prices = {s.lookup_key: StripePrice(f"price_{s.lookup_key}", s.lookup_key, meters[s.meter]) for s in price_specs()}
    return StripeCatalog(meters, True, prices)


def test_empty_stripe_needs_every_meter_the_product_and_the_managed_prices() -> None:
    plan = plan_catalog(EMPTY)
    assert plan.create_meters == list(ALL_METERS) and plan.create_product
    assert {s.catalog_key for s in plan.create_prices} == {t.catalog_key for t in TIERS.values()} | {"disk_overage"}
    # Overage and reserved are priced in the dashboard: reported missing, never created.
    assert {s.catalog_key for s in plan.missing_dashboard} == {"overage", "reserved"}


def test_complete_stripe_needs_nothing() -> None:
    plan = plan_catalog(full_stripe())
    assert plan.changes == 0 and plan.missing_dashboard == [] and plan.meter_mismatch == []


def test_price_on_the_wrong_meter_is_flagged_not_recreated() -> None:
    stripe = full_stripe()
    key = TIERS[1024].price_key
    prices = dict(stripe.prices) | {key: StripePrice("price_x", key, "mtr_other")}
    plan = plan_catalog(StripeCatalog(stripe.meters, True, prices))
    assert plan.meter_mismatch == [key] and plan.create_prices == []


def test_entries_cover_every_catalog_key_of_the_contract() -> None:
    entries = catalog_entries(full_stripe().prices)
    assert tuple(sorted(e.key for e in entries)) == tuple(sorted(CATALOG_KEYS))
    assert all(isinstance(e, CatalogEntry) and e.price_id.startswith("price_") for e in entries)
    assert catalog_entries({}) == []


def test_every_meter_the_rollup_emits_has_a_price() -> None:
    priced = {s.meter for s in price_specs()}
    emitted = {t.meter for t in TIERS.values()} | {OVERAGE_METER}
    assert emitted <= priced <= set(ALL_METERS)


def test_managed_prices_are_positive_decimal_rates() -> None:
    for spec in price_specs():
        if spec.managed:
            assert spec.unit_amount_decimal is not None and spec.unit_amount_decimal > 0
            # Stripe accepts at most 12 decimal places in unit_amount_decimal.
            assert -spec.unit_amount_decimal.as_tuple().exponent <= 12  # type: ignore[operator]
