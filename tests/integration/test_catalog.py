"""ensure-products against the Stripe emulator: idempotent, complete, and in step with the rollup."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.stripe_gateway import StripeAccountsGateway
from chalicelib.bootstrap import Container
from chalicelib.core.catalog import PRODUCT_ID
from chalicelib.core.pricing import DASHBOARD_PRICE_KEYS, OVERAGE_METER, TIERS
from chalicelib.services.products import ensure_products


@pytest.fixture
def sc(emulator: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url})


@pytest.fixture
def accounts(svc: Container, sc: stripe.StripeClient) -> DynamoAccounts:
    svc.account_gateway = StripeAccountsGateway(sc)
    return svc.accounts()


def creates(emulator: Any) -> int:
    return sum(n for k, n in emulator.app.requests.items() if k.startswith("POST "))


def test_second_run_creates_nothing_and_publishes_the_same_catalog(
    svc: Container, accounts: DynamoAccounts, emulator: Any
) -> None:
    first = ensure_products(svc.accounts_gateway(), accounts, svc.now())
    assert first.published and first.plan.changes > 0
    made = creates(emulator)
    second = ensure_products(svc.accounts_gateway(), accounts, svc.now())
    assert second.plan.changes == 0 and creates(emulator) == made
    assert {e.key: e.price_id for e in second.entries} == {e.key: e.price_id for e in first.entries}
    assert {e.key: e.price_id for e in accounts.catalog()} == {e.key: e.price_id for e in first.entries}


def test_dry_run_changes_nothing(svc: Container, accounts: DynamoAccounts, emulator: Any) -> None:
    result = ensure_products(svc.accounts_gateway(), accounts, svc.now(), dry_run=True)
    assert result.plan.changes > 0 and not result.published
    assert creates(emulator) == 0 and accounts.catalog() == []


def test_rollup_meters_and_catalog_prices_agree(
    svc: Container, accounts: DynamoAccounts, sc: stripe.StripeClient
) -> None:
    ensure_products(svc.accounts_gateway(), accounts, svc.now())
    meter_ids = {m.event_name: m.id for m in sc.v1.billing.meters.list().data}
    for meter in [t.meter for t in TIERS.values()] + [OVERAGE_METER]:
        assert meter in meter_ids, f"the rollup emits {meter} but Stripe has no such meter"
    for entry in accounts.catalog():
        price = sc.v1.prices.retrieve(entry.price_id).to_dict()
        if price.get("recurring") and price["recurring"].get("meter"):
            assert price["recurring"]["meter"] == meter_ids[entry.meter], entry
        assert price["product"] == PRODUCT_ID or entry.key in DASHBOARD_PRICE_KEYS


def test_dashboard_prices_are_discovered_not_created(
    svc: Container, accounts: DynamoAccounts, sc: stripe.StripeClient
) -> None:
    sc.v1.products.create({"id": "prod_dash", "name": "made by hand"})
    made = sc.v1.prices.create(
        {
            "product": "prod_dash",
            "currency": "usd",
            "unit_amount_decimal": "0.0004",
            "lookup_key": DASHBOARD_PRICE_KEYS["overage"],
        }
    )
    result = ensure_products(svc.accounts_gateway(), accounts, svc.now())
    catalog = {e.key: e.price_id for e in result.entries}
    assert catalog["overage"] == made.id and "reserved" not in catalog
    assert [s.catalog_key for s in result.plan.missing_dashboard] == ["reserved"]


def test_an_empty_catalog_is_never_published(accounts: DynamoAccounts) -> None:
    with pytest.raises(ValueError, match="empty"):
        accounts.publish_catalog([], 1)


def test_cli_ensure_products_json_and_dry_run(svc: Container, accounts: DynamoAccounts, emulator: Any,
                                              run_cli: Callable[..., Any]) -> None:
    dry = run_cli(["ensure-products", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["published"] is False and creates(emulator) == 0
    real = run_cli(["ensure-products", "--json"])
    assert real.exit_code == 0, real.output
    body = json.loads(real.output)
    assert body["published"] is True and set(body["catalog"]) >= {t.catalog_key for t in TIERS.values()}
    again = json.loads(run_cli(["ensure-products", "--json"]).output)
    assert again["created"] == {"meters": [], "product": False, "prices": []}
