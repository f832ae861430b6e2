"""The pricing table: memory tier -> meter, catalog key, price key and rate.

The rollup and `ensure-products` both read this module, so a meter name can
never differ between what is metered and what is priced.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chalicelib.core.money import exact

PRICE_VERSION = "v1"
METER_PREFIX = "sandbox_compute_sandbox_"
OVERAGE_METER = "sandbox_compute_sandbox_overage"
RESERVED_METER = "sandbox_compute_sandbox_reserved"
DISK_OVERAGE_METER = "sandbox_compute_disk_overage"
CURRENCY = "usd"


@dataclass(frozen=True)
class Tier:
    memory_mb: int
    meter: str
    catalog_key: str
    price_key: str
    # Cents per second at this tier, as Stripe's unit_amount_decimal (12 places max).
    cents_per_second: Decimal

    @property
    def gb(self) -> int:
        return self.memory_mb // 1024


# Reference rate: 0.0004 cents per GB-second (USD 0.0144 per GB-hour); a deployment
# changes it here and bumps PRICE_VERSION so Stripe gets new prices, never edited ones.
_CENTS_PER_GB_SECOND = Decimal("0.0004")

TIERS: dict[int, Tier] = {
    mb: Tier(
        memory_mb=mb,
        meter=f"{METER_PREFIX}{mb // 1024}gb",
        catalog_key=f"tier_{mb}",
        price_key=f"sandbox_compute_{mb // 1024}gb_{PRICE_VERSION}",
        cents_per_second=_CENTS_PER_GB_SECOND * (mb // 1024),
    )
    for mb in (1024, 4096, 8192, 16384, 32768, 65536)
}

DISK_OVERAGE_PRICE_KEY = f"sandbox_disk_overage_{PRICE_VERSION}"
DISK_OVERAGE_CENTS_PER_UNIT = Decimal("0.00001")
# Prices made by hand in the Stripe dashboard: discovered by lookup key, never created.
DASHBOARD_PRICE_KEYS = {"overage": "sandbox_compute_overage", "reserved": "sandbox_compute_reserved"}

CATALOG_KEYS: tuple[str, ...] = (*(t.catalog_key for t in TIERS.values()), "overage", "reserved", "disk_overage")

ALL_METERS: tuple[str, ...] = (*(t.meter for t in TIERS.values()), OVERAGE_METER, RESERVED_METER, DISK_OVERAGE_METER)


def legacy_meter(memory_mb: int) -> str | None:
    """The per-tier meter for a memory size, or None for a size we cannot price."""
    tier = TIERS.get(memory_mb)
    return tier.meter if tier else None


def gb_seconds(memory_mb: int, seconds: Decimal) -> Decimal:
    return exact(Decimal(memory_mb) * seconds / 1024)
