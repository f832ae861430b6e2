"""One suite, two AccountStores: the in-memory one must answer exactly as the DynamoDB one (moto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.accounts import MemoryAccounts
from chalicelib.core.catalog import CatalogEntry
from chalicelib.core.orgs import Org
from chalicelib.core.subscriptions import Subscription
from chalicelib.ports import AccountStore
from tests.conftest import PREFIX
from tests.contract.conftest import RETENTION

SUB_A = Subscription("sub_a", ("si_1", "si_2"), "active", "org1", 100)
SUB_B = Subscription("sub_b", ("si_3",), "active", "org1", 200)


@pytest.fixture(params=["memory", "dynamodb"])
def both(request: pytest.FixtureRequest) -> tuple[Any, Callable[[Org], Org]]:
    """The AccountStore under contract, and how to seed an org in its tables (a public put_org either way)."""
    if request.param == "memory":
        memory = MemoryAccounts()
        return memory, memory.put_org
    dynamodb = request.getfixturevalue("dynamodb")
    # DynamoAccounts has no put_org: the billing store's, on the same orgs table, seeds it.
    return DynamoAccounts(dynamodb, PREFIX), DynamoStore(dynamodb, PREFIX, RETENTION).put_org


@pytest.fixture
def accounts(both: tuple[Any, Callable[[Org], Org]]) -> Any:
    return both[0]


@pytest.fixture
def put(both: tuple[Any, Callable[[Org], Org]]) -> Callable[[Org], Org]:
    return both[1]


def test_lease_is_exclusive_until_it_expires_and_only_its_holder_releases_it(accounts: AccountStore) -> None:
    assert accounts.claim_org("org1", "a", now=100, until=220)
    assert accounts.claim_org("org1", "a", now=110, until=230), "the holder may renew"
    assert not accounts.claim_org("org1", "b", now=200, until=320)
    accounts.release_org("org1", "b")  # not b's: stays
    assert not accounts.claim_org("org1", "b", now=229, until=349)
    assert accounts.claim_org("org1", "b", now=230, until=350), "expired at `until`"
    accounts.release_org("org1", "a")  # a lost it: b's lease stays
    assert not accounts.claim_org("org1", "c", now=231, until=351)
    accounts.release_org("org1", "b")
    assert accounts.claim_org("org1", "c", now=232, until=352)
    org = accounts.get_org("org1")
    assert org is not None and org.plan == "free", "a lease on an unknown org makes a free org"


def test_attach_only_over_nothing_the_same_or_the_named_previous(
    accounts: AccountStore, put: Callable[[Org], Org]
) -> None:
    put(Org("org1"))
    assert accounts.attach_subscription("org1", SUB_A, None, 1)
    assert accounts.attach_subscription("org1", SUB_A, None, 2)
    assert not accounts.attach_subscription("org1", SUB_B, None, 3)
    assert not accounts.attach_subscription("org1", SUB_B, "sub_other", 3)
    assert accounts.attach_subscription("org1", SUB_B, "sub_a", 4)
    org = accounts.get_org("org1")
    assert org is not None and org.subscription_id == "sub_b" and org.subscription_item_ids == ("si_3",)


def test_detach_only_the_named_subscription(accounts: AccountStore, put: Callable[[Org], Org]) -> None:
    put(Org("org1", subscription_id="sub_a", subscription_item_ids=("si_1",)))
    assert not accounts.detach_subscription("org1", "sub_b", 5)
    assert accounts.detach_subscription("org1", "sub_a", 5)
    assert not accounts.detach_subscription("org1", "sub_a", 6)
    org = accounts.get_org("org1")
    assert org is not None and org.subscription_id is None and org.subscription_item_ids == ()


def test_credit_is_recorded_once(accounts: AccountStore, put: Callable[[Org], Org]) -> None:
    put(Org("org1"))
    assert accounts.record_credit("org1", "cbtxn_1", 1)
    assert accounts.record_credit("org1", "cbtxn_1", 2)
    assert not accounts.record_credit("org1", "cbtxn_2", 3)
    org = accounts.get_org("org1")
    assert org is not None and org.credit_txn_id == "cbtxn_1"


def test_plan_changes_never_go_back_in_time_and_deletions_only_for_the_current_subscription(
    accounts: AccountStore, put: Callable[[Org], Org]
) -> None:
    put(Org("org1", subscription_id="sub_a"))
    assert accounts.set_plan("org1", "pro", 1000, 1, customer="cus_1")
    assert not accounts.set_plan("org1", "free", 900, 2)
    assert not accounts.set_plan("org1", "free", 2000, 3, only_subscription="sub_other")
    assert accounts.set_plan("org1", "pro", 1000, 3, customer="cus_2"), "same second applies"
    assert accounts.set_plan("org1", "free", 2000, 4, only_subscription="sub_a")
    org = accounts.get_org("org1")
    assert org is not None and org.plan == "free" and org.plan_changed_at == 2000
    assert org.subscription_id is None and org.stripe_customer_id == "cus_1", "the first customer stays"
    found = accounts.org_by_customer("cus_1")
    assert found is not None and found.org_id == "org1" and accounts.org_by_customer("cus_2") is None


def test_events_are_remembered(accounts: AccountStore) -> None:
    assert not accounts.event_seen("evt_1")
    accounts.remember_event("evt_1", "checkout.session.completed", 1)
    assert accounts.event_seen("evt_1") and not accounts.event_seen("evt_2")


def test_catalog_is_replaced_whole(accounts: Any) -> None:
    assert accounts.catalog() == []
    a, b = CatalogEntry("overage", "price_1", "lk_1", "m_1"), CatalogEntry("tier_1024", "price_2", "lk_2", "m_2")
    accounts.publish_catalog([b, a], 1)
    assert sorted(accounts.catalog(), key=lambda e: e.key) == [a, b]
    accounts.publish_catalog([a], 2)
    assert accounts.catalog() == [a]
    with pytest.raises(ValueError):
        accounts.publish_catalog([], 3)
