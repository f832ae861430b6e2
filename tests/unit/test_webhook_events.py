"""Parsing Stripe events into what the edge acts on (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.memory.accounts import MemoryAccounts
from chalicelib.services.webhook import MalformedEvent, handle_event, parse_event, resolve_org
from tests.fakes.stripe_accounts import FakeAccountsGateway


def event(obj: dict[str, Any], kind: str = "checkout.session.completed") -> dict[str, Any]:
    return {"id": "evt_1", "type": kind, "created": 123, "data": {"object": obj}}


def test_org_from_metadata_first_then_customer_metadata() -> None:
    e = parse_event(
        event(
            {
                "id": "cs_1",
                "customer": "cus_1",
                "metadata": {"org_id": "a", "type": "setup"},
                "customer_metadata": {"org_id": "b"},
            }
        )
    )
    assert (e.org_id, e.customer, e.setup, e.created, e.object_id) == ("a", "cus_1", True, 123, "cs_1")
    e = parse_event(event({"id": "cs_1", "customer": {"id": "cus_2"}, "customer_metadata": {"org_id": "b"}}))
    assert (e.org_id, e.customer, e.setup) == ("b", "cus_2", False)


@pytest.mark.parametrize(
    "payload", [[], {"type": "x"}, {"id": "e", "type": "customer.subscription.created", "data": {"object": "str"}}]
)
def test_malformed(payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(payload)


# Edges the fuzz found first (tests/fuzz), pinned by example.

def test_an_event_without_created_orders_before_any_other() -> None:
    assert parse_event(event({"id": "cs_1"}) | {"created": None}).created == 0


def test_an_event_naming_neither_org_nor_customer_is_nobodys() -> None:
    e = parse_event(event({"id": "sub_1"}, "customer.subscription.deleted"))
    assert resolve_org(e, MemoryAccounts()) is None


@pytest.mark.parametrize("kind", ["checkout.session.completed", "customer.subscription.created"])
def test_a_checkout_or_subscription_without_a_customer_is_malformed(kind: str) -> None:
    accounts = MemoryAccounts()
    payload = event({"id": "obj_1", "metadata": {"org_id": "a", "type": "setup"}}, kind)
    with pytest.raises(MalformedEvent, match="no customer"):
        handle_event(payload, accounts, FakeAccountsGateway(lambda: 123), now=123)
    assert not accounts.event_seen("evt_1")  # not remembered: a fixed delivery is applied
