"""Issue 9 (hostile input) on POST /webhooks/stripe: signed or not, odd input never answers 5xx."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import Mock

import pytest

from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.ports import StoreRejected
from sim.api import stripe_signature
from tests.conftest import BASE_ENV

WHSEC = BASE_ENV["STRIPE_WEBHOOK_SECRET"]
URL = "/webhooks/stripe"


def send(client: Any, payload: bytes, signature: str) -> Any:
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
    return client.http.post(URL, body=payload, headers=headers)


def signed(client: Any, svc: Container, payload: bytes, at: int | None = None) -> Any:
    return send(client, payload, stripe_signature(payload, WHSEC, svc.now() if at is None else at))


def sub_deleted(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_odd",
        "type": "customer.subscription.deleted",  # store only: no Stripe call
        "created": 1000,
        "data": {"object": {"id": "sub_1", "customer": "cus_1", "metadata": {"org_id": "org1"}}},
    }
    return event | changes


@pytest.mark.parametrize(
    "header",
    ["t=1,v1=é", "t=¹,v1=" + "0" * 64, "t=" + "9" * 5000 + ",v1=" + "0" * 64, "v1=" + "0" * 64, "t=,v1=", "garbage"],
)
def test_garbage_signature_headers_are_400(client: Any, svc: Container, header: str) -> None:
    res = send(client, b'{"id": "evt"}', header)
    assert res.status_code == 400 and "signature" in res.json_body["error"].lower()


def test_a_signature_from_the_future_is_400(client: Any, svc: Container) -> None:
    payload = json.dumps(sub_deleted()).encode()
    res = signed(client, svc, payload, at=svc.now() + 3600)
    assert res.status_code == 400 and "tolerance" in res.json_body["error"]
    assert signed(client, svc, payload, at=svc.now() + 299).status_code == 200


def test_deeply_nested_signed_event_is_400(client: Any, svc: Container) -> None:
    payload = b'{"id": "evt", "type": "x", "data": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    res = signed(client, svc, payload)
    assert res.status_code == 400 and "nested deeper than 32" in res.json_body["error"]


@pytest.mark.parametrize("body", [b"[]", b"null", b'"evt"', b"{}", b'{"id": "evt\\u0000", "type": "x"}'])
def test_signed_bodies_that_are_not_stripe_events_are_400(client: Any, svc: Container, body: bytes) -> None:
    res = signed(client, svc, body)
    assert res.status_code == 400 and "error" in res.json_body


@pytest.mark.parametrize(
    "event, fragment",
    [
        (sub_deleted(data=[]), "data is not an object"),
        (sub_deleted(data={"object": "str"}), "data.object"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": "org1"}}), "metadata"),
        (sub_deleted(data={"object": {"id": "sub_1", "customer_metadata": [1]}}), "customer_metadata"),
        (sub_deleted(created="yesterday"), "created"),
        (sub_deleted(created=[1]), "created"),
        (sub_deleted(created=float("nan")), "created"),
        (sub_deleted(created=float("inf")), "created"),  # what 1e309 parses to
        (sub_deleted(created=True), "created"),
        (sub_deleted(data={"object": {"id": "sub_1", "customer": 42, "metadata": {"org_id": "o"}}}), "customer"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": {"org_id": "o" * 2049}}}), "org_id"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": {"org_id": {"a": 1}}}}), "org_id"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": {"org_id": "\ud800"}}}), "org_id"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": {"org_id": "org\u0000"}}}), "org_id"),
        (sub_deleted(data={"object": {"id": "s" * 3000, "metadata": {"org_id": "org1"}}}), "data.object.id"),
        # Found by the route fuzz: a non-ASCII id ends up in an Idempotency-Key header -> 502 forever.
        (sub_deleted(data={"object": {"id": "cs_ǅ", "metadata": {"org_id": "org1"}}}), "ASCII"),
        (sub_deleted(data={"object": {"id": "sub_1", "metadata": {"org_id": "orgé"}}}), "ASCII"),
    ],
)
def test_signed_events_with_odd_shapes_are_acknowledged_as_unusable(
    client: Any, svc: Container, event: dict[str, Any], fragment: str
) -> None:
    payload = json.dumps(event).encode()  # NaN / Infinity as Python writes them, "\ud800" escaped
    res = signed(client, svc, payload)
    assert res.status_code == 200, res.json_body
    assert res.json_body["received"] is True and fragment in res.json_body["unusable"]
    assert svc.store.get_org("org1") is None and svc.store.get_org("o") is None


def test_1e309_created_is_unusable(client: Any, svc: Container) -> None:
    payload = json.dumps(sub_deleted(created=0)).encode().replace(b'"created": 0', b'"created": 1e309')
    res = signed(client, svc, payload)
    assert res.status_code == 200 and "created" in res.json_body["unusable"]


def test_odd_shapes_of_ignored_types_are_just_ignored(client: Any, svc: Container) -> None:
    event = {"id": "evt_inv", "type": "invoice.paid", "created": "soon", "data": []}
    res = signed(client, svc, json.dumps(event).encode())
    assert res.status_code == 200 and res.json_body == {"received": True, "ignored": True}


def test_a_store_rejection_of_a_signed_event_is_acknowledged(client: Any, svc: Container) -> None:
    accounts = Mock(spec=DynamoAccounts)
    accounts.event_seen.return_value = False
    accounts.set_plan.side_effect = StoreRejected("set_plan: ValidationException")
    svc.account_store = accounts
    res = signed(client, svc, json.dumps(sub_deleted()).encode())
    assert res.status_code == 200 and "refuses it for good" in res.json_body["unusable"]


def test_a_usable_event_still_applies(client: Any, svc: Container) -> None:
    svc.store.put_org(Org("org1", plan="pro", subscription_id="sub_1"))
    res = signed(client, svc, json.dumps(sub_deleted()).encode())
    assert res.status_code == 200 and res.json_body["applied"] is True
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "free"
