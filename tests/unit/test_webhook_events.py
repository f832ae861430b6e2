"""Parsing Stripe events into what the edge acts on (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.services.webhook import MalformedEvent, parse_event


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
