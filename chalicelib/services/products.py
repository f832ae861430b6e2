"""`ensure-products`: apply the catalog plan (core/catalog.py) through Stripe, then publish the catalog.

Running it twice creates nothing the second time: meters are found by event
name, the product by its fixed id and prices by lookup key.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.catalog import (
    PRODUCT_ID,
    PRODUCT_NAME,
    CatalogEntry,
    CatalogPlan,
    EmptyCatalog,
    catalog_entries,
    plan_catalog,
    price_specs,
)
from chalicelib.ports import CatalogStore
from chalicelib.stripe_ports import CatalogGateway


@dataclass(frozen=True)
class EnsureResult:
    plan: CatalogPlan
    entries: list[CatalogEntry]
    published: bool

    def body(self) -> dict[str, object]:
        return {
            "created": {
                "meters": self.plan.create_meters,
                "product": self.plan.create_product,
                "prices": [s.lookup_key for s in self.plan.create_prices],
            },
            "missingDashboardPrices": [s.lookup_key for s in self.plan.missing_dashboard],
            "meterMismatch": self.plan.meter_mismatch,
            "catalog": {e.key: e.price_id for e in self.entries},
            "published": self.published,
        }


def ensure_products(gateway: CatalogGateway, store: CatalogStore, now: int, dry_run: bool = False) -> EnsureResult:
    """Find or create meters, product and managed prices, then publish the catalog (refusing an empty one)."""
    keys = [s.lookup_key for s in price_specs()]
    current = gateway.stripe_catalog(keys, PRODUCT_ID)
    plan = plan_catalog(current)
    if dry_run:
        return EnsureResult(plan, catalog_entries(current.prices), published=False)
    meters = dict(current.meters)
    for name in plan.create_meters:
        meters[name] = gateway.create_meter(name)
    if plan.create_product:
        gateway.create_product(PRODUCT_ID, PRODUCT_NAME)
    prices = dict(current.prices)
    for spec in plan.create_prices:
        prices[spec.lookup_key] = gateway.create_price(spec, PRODUCT_ID, meters[spec.meter])
    entries = catalog_entries(prices)
    if not entries:
        raise EmptyCatalog("no prices found or created: refusing to publish an empty catalog")
    store.publish_catalog(entries, now)
    return EnsureResult(plan, entries, published=True)
