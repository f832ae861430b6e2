"""The price catalog: which Stripe meters and prices must exist, and the (key, price id) rows the edge uses.

`plan_catalog` is pure: given what Stripe already has, it says what to create.
`ensure_products` applies a plan through the Stripe gateway and publishes the
catalog; running it twice creates nothing the second time, because meters are
found by event name, the product by its fixed id and prices by lookup key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from chalicelib.core.pricing import (
    ALL_METERS,
    DASHBOARD_PRICE_KEYS,
    DISK_OVERAGE_CENTS_PER_UNIT,
    DISK_OVERAGE_METER,
    DISK_OVERAGE_PRICE_KEY,
    OVERAGE_METER,
    RESERVED_METER,
    TIERS,
)

PRODUCT_ID = "opensandbox_sandbox_compute"
PRODUCT_NAME = "Sandbox compute"


class EmptyCatalog(Exception):
    """Nothing to publish (or nothing published): provisioning must not proceed without prices."""


@dataclass(frozen=True)
class PriceSpec:
    """A price the catalog needs; `managed` ones we create, the others are made in the dashboard."""

    catalog_key: str
    lookup_key: str
    meter: str
    unit_amount_decimal: Decimal | None
    managed: bool


@dataclass(frozen=True)
class StripePrice:
    price_id: str
    lookup_key: str
    meter_id: str | None


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    price_id: str
    lookup_key: str
    meter: str


@dataclass(frozen=True)
class StripeCatalog:
    """What Stripe holds now: meter ids by event name, whether our product exists, prices by lookup key."""

    meters: dict[str, str]
    product_exists: bool
    prices: dict[str, StripePrice]


@dataclass(frozen=True)
class CatalogPlan:
    create_meters: list[str]
    create_product: bool
    create_prices: list[PriceSpec]
    # Dashboard prices that are not there yet: reported, never created.
    missing_dashboard: list[PriceSpec]
    # Prices whose lookup key exists but points at another meter: an operator must look.
    meter_mismatch: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.create_meters) + int(self.create_product) + len(self.create_prices)


def price_specs() -> list[PriceSpec]:
    specs = [
        PriceSpec(t.catalog_key, t.price_key, t.meter, t.cents_per_second, managed=True) for t in TIERS.values()
    ]
    specs.append(PriceSpec("disk_overage", DISK_OVERAGE_PRICE_KEY, DISK_OVERAGE_METER,
                           DISK_OVERAGE_CENTS_PER_UNIT, managed=True))
    specs.append(PriceSpec("overage", DASHBOARD_PRICE_KEYS["overage"], OVERAGE_METER, None, managed=False))
    specs.append(PriceSpec("reserved", DASHBOARD_PRICE_KEYS["reserved"], RESERVED_METER, None, managed=False))
    return specs


def plan_catalog(current: StripeCatalog) -> CatalogPlan:
    missing_meters = [m for m in ALL_METERS if m not in current.meters]
    create: list[PriceSpec] = []
    dashboard: list[PriceSpec] = []
    mismatch: list[str] = []
    for spec in price_specs():
        price = current.prices.get(spec.lookup_key)
        if price is None:
            (create if spec.managed else dashboard).append(spec)
        elif price.meter_id is not None and price.meter_id != current.meters.get(spec.meter):
            mismatch.append(spec.lookup_key)
    return CatalogPlan(missing_meters, not current.product_exists, create, dashboard, mismatch)


def catalog_entries(prices: dict[str, StripePrice]) -> list[CatalogEntry]:
    """The rows to publish: every spec whose price exists in Stripe."""
    return [
        CatalogEntry(spec.catalog_key, prices[spec.lookup_key].price_id, spec.lookup_key, spec.meter)
        for spec in price_specs()
        if spec.lookup_key in prices
    ]








