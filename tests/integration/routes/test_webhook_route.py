"""POST /webhooks/stripe against the Stripe emulator (real stripe-python client) and moto tables."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
import stripe

from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.stripe_gateway import StripeAccountsGateway
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.core.subscriptions import UPGRADE_CREDIT_CENTS
from chalicelib.services.products import ensure_products
from chalicelib.services.provisioning import ProvisioningConflict
from chalicelib.services.webhook import handle_event
from sim.api import stripe_signature
from stripe_emulator.faults import Fault
from tests.conftest import BASE_ENV, PREFIX

WHSEC = BASE_ENV["STRIPE_WEBHOOK_SECRET"]


def deliver(client: Any, event: dict[str, Any], secret: str = WHSEC, at: int | None = None) -> Any:
    payload = json.dumps(event).encode()
    # Signed at the app's (injected) clock: the route checks the signature's age against it.
    at = client.container.now() if at is None else at
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(payload, secret, at)}
    return client.http.post("/webhooks/stripe", body=payload, headers=headers)


def checkout(
    customer: str, org_id: str | None, event_id: str = "evt_checkout_1", created: int = 1000, session: str = "cs_1"
) -> dict[str, Any]:
    metadata = {"type": "setup", **({"org_id": org_id} if org_id else {})}
    return {
        "id": event_id,
        "type": "checkout.session.completed",
        "created": created,
        "data": {
            "object": {
                "id": session,
                "object": "checkout.session",
                "customer": customer,
                "mode": "setup",
                "metadata": metadata,
            }
        },
    }


def sub_event(
    kind: str, customer: str, sub_id: str, created: int, org_id: str | None = "org1", event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{kind}_{sub_id}_{created}",
        "type": f"customer.subscription.{kind}",
        "created": created,
        "data": {
            "object": {
                "id": sub_id,
                "object": "subscription",
                "customer": customer,
                "metadata": {"org_id": org_id} if org_id else {},
            }
        },
    }


@pytest.fixture
def sc(emulator: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url}, max_network_retries=0)


@pytest.fixture
def accounts(svc: Container, sc: stripe.StripeClient) -> DynamoAccounts:
    svc.account_gateway = StripeAccountsGateway(sc)
    return svc.accounts()


@pytest.fixture
def customer(sc: stripe.StripeClient) -> str:
    return str(sc.v1.customers.create({"email": "o@example.com", "balance": -500}).id)


@pytest.fixture
def catalog(svc: Container, accounts: DynamoAccounts) -> int:
    return len(ensure_products(svc.accounts_gateway(), accounts, svc.now()).entries)


def subs(emulator: Any, customer: str, live_only: bool = True) -> list[dict[str, Any]]:
    out = [s for s in emulator.app.state.subscriptions.values() if s["customer"] == customer]
    return [s for s in out if s["status"] != "canceled"] if live_only else out


def credits(emulator: Any, customer: str) -> list[dict[str, Any]]:
    return list(emulator.app.state.balance_txns[customer])


def test_upgrade_provisions_one_subscription_with_every_price_and_one_credit(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int
) -> None:
    svc.store.put_org(Org("org1", plan="free", billing_mode="unified"))
    res = deliver(client, checkout(customer, "org1"))
    assert res.status_code == 200, res.body
    assert res.json_body["action"] == "provisioned" and res.json_body["items"] == catalog
    (sub,) = subs(emulator, customer)
    prices = {i["price"]["id"] for i in sub["items"]["data"]}
    assert prices == {e.price_id for e in svc.accounts().catalog()}
    (credit,) = credits(emulator, customer)
    assert credit["amount"] == -UPGRADE_CREDIT_CENTS
    # The credit adds to the balance the customer had (-500), it does not overwrite it.
    assert emulator.app.state.customers[customer]["balance"] == -500 - UPGRADE_CREDIT_CENTS
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro" and org.subscription_id == sub["id"]
    assert org.billing_mode == "unified" and len(org.subscription_item_ids) == catalog
    assert org.credit_txn_id == credit["id"] and org.stripe_customer_id == customer


def test_retried_and_redelivered_events_never_provision_twice(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int
) -> None:
    assert deliver(client, checkout(customer, "org1")).status_code == 200
    again = deliver(client, checkout(customer, "org1"))
    assert again.status_code == 200 and again.json_body["duplicate"] is True
    # Stripe may also send a second event (another id) for the same checkout session.
    other = deliver(client, checkout(customer, "org1", event_id="evt_checkout_2"))
    assert other.status_code == 200 and other.json_body["subscriptionCreated"] is False
    assert other.json_body["creditCreated"] is False
    assert len(subs(emulator, customer)) == 1 and len(credits(emulator, customer)) == 1


def test_crash_between_subscription_creation_and_storing_it(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int, sc: stripe.StripeClient
) -> None:
    gateway = svc.accounts_gateway()
    prices = [e.price_id for e in svc.accounts().catalog()]
    # The first delivery created the subscription and the credit, then the Lambda died before storing.
    made = gateway.create_subscription(customer, "org1", prices, 1000, idempotency_key="sub-create-org1-cs_1")
    gateway.create_credit(customer, "org1", -UPGRADE_CREDIT_CENTS, "upgrade-credit-org1", "upgrade-credit-org1-x")
    # ... and Stripe retried after the 24 h idempotency window: keys no longer replay.
    emulator.app.idempotency.clear()
    res = deliver(client, checkout(customer, "org1"))
    assert res.status_code == 200, res.body
    assert res.json_body["subscription"] == made.subscription_id and res.json_body["subscriptionCreated"] is False
    assert len(subs(emulator, customer)) == 1 and len(credits(emulator, customer)) == 1
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro" and org.subscription_id == made.subscription_id


RACE_REPEAT = int(os.environ.get("RACE_REPEAT", "3"))


class SerializedClient:
    """moto checks a condition and then writes, unlocked: two threads can both pass one condition,
    which real DynamoDB never allows. One lock around each call makes every request atomic again."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


@pytest.mark.parametrize("round_", range(RACE_REPEAT))
def test_concurrent_deliveries_converge_on_one_subscription_and_one_credit(
    svc: Container, emulator: Any, customer: str, catalog: int, dynamodb: Any, round_: int
) -> None:
    """`RACE_REPEAT=200 make test-race` runs this 200 times (see README)."""
    emulator.app.latency_ms = 20  # widen the race window
    accounts, gateway = DynamoAccounts(SerializedClient(dynamodb), PREFIX), svc.accounts_gateway()
    events = [checkout(customer, "org1", event_id=f"evt_{i}", session=f"cs_{i % 2}", created=1000 + i % 2)
              for i in range(4)]
    answered: list[str] = []

    def run(event: dict[str, Any]) -> None:
        try:
            handle_event(event, accounts, gateway, svc.now())
            answered.append(event["id"])
        except ProvisioningConflict:
            pass  # 409: another delivery holds the org; Stripe retries

    threads = [threading.Thread(target=run, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emulator.app.latency_ms = 0
    assert answered, "one delivery at least must have held the lease and provisioned"
    for event in events:  # Stripe retries every delivery that did not get a 2xx
        if event["id"] not in answered:
            handle_event(event, accounts, gateway, svc.now())
    assert len(subs(emulator, customer)) == 1, subs(emulator, customer)
    assert len(credits(emulator, customer)) == 1
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro" and org.subscription_id == subs(emulator, customer)[0]["id"]


def test_a_stored_server_error_under_the_credit_key_does_not_block_the_upgrade(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int
) -> None:
    # The first attempt's credit call got a 500 that Stripe stores under the key and replays for 24 h.
    emulator.app.faults.append(Fault(f"/v1/customers/{customer}/balance_transactions", "POST", "status", 1))
    first = deliver(client, checkout(customer, "org1"))
    assert first.status_code == 502
    again = deliver(client, checkout(customer, "org1"))
    assert again.status_code == 200, again.body
    assert len(credits(emulator, customer)) == 1 and len(subs(emulator, customer)) == 1
    assert emulator.app.idempotency["upgrade-credit-org1"].status == 500


def test_the_loser_of_a_lease_answers_409_and_creates_nothing(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int
) -> None:
    assert svc.accounts().claim_org("org1", "another-delivery", svc.now(), svc.now() + 60)
    res = deliver(client, checkout(customer, "org1"))
    assert res.status_code == 409 and "retry" in res.json_body["error"]
    assert subs(emulator, customer) == [] and credits(emulator, customer) == []


def test_an_unpaid_subscription_is_kept_and_an_orphan_is_cancelled(
    client: Any, svc: Container, emulator: Any, customer: str, catalog: int, sc: stripe.StripeClient
) -> None:
    assert deliver(client, checkout(customer, "org1")).status_code == 200
    (sub,) = subs(emulator, customer)
    sub["status"] = "unpaid"
    orphan = svc.accounts_gateway().create_subscription(
        customer, "org1", [e.price_id for e in svc.accounts().catalog()], 1000, "sub-create-dead-lambda")
    res = deliver(client, checkout(customer, "org1", event_id="evt_checkout_2", session="cs_2"))
    assert res.status_code == 200 and res.json_body["subscription"] == sub["id"]
    assert res.json_body["cancelled"] == [orphan.subscription_id]
    assert [s["id"] for s in subs(emulator, customer)] == [sub["id"]]


def test_empty_catalog_answers_5xx_then_recovers_once_published(
    client: Any, svc: Container, emulator: Any, customer: str, accounts: DynamoAccounts
) -> None:
    svc.store.put_org(Org("org1", plan="free"))
    res = deliver(client, checkout(customer, "org1"))
    assert res.status_code == 500 and "ensure-products" in res.json_body["error"]
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "free" and org.subscription_id is None
    assert subs(emulator, customer) == [] and credits(emulator, customer) == []
    ensure_products(svc.accounts_gateway(), accounts, svc.now())
    assert deliver(client, checkout(customer, "org1")).status_code == 200
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro" and len(subs(emulator, customer)) == 1


def test_downgrade_marks_free(client: Any, svc: Container, customer: str, catalog: int) -> None:
    deliver(client, checkout(customer, "org1", created=1000))
    org = svc.store.get_org("org1")
    assert org is not None and org.subscription_id
    res = deliver(client, sub_event("deleted", customer, org.subscription_id, created=2000))
    assert res.status_code == 200 and res.json_body["applied"] is True
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "free" and org.subscription_id is None


def test_late_created_event_does_not_undo_a_newer_deletion(
    client: Any, svc: Container, customer: str, catalog: int, emulator: Any
) -> None:
    assert deliver(client, checkout(customer, "org1", created=1000)).status_code == 200
    org = svc.store.get_org("org1")
    assert org is not None and org.subscription_id
    first = org.subscription_id
    svc.accounts_gateway().cancel_subscription(first)
    assert deliver(client, sub_event("deleted", customer, first, created=2000)).json_body["applied"] is True
    late = deliver(client, sub_event("created", customer, first, created=1500))
    assert late.status_code == 200 and late.json_body["applied"] is False
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "free"
    # A genuinely newer upgrade still applies, and its own `created` event is the attached one.
    newer = checkout(customer, "org1", event_id="evt_2", created=2500, session="cs_2")
    assert deliver(client, newer).status_code == 200
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro" and org.subscription_id not in (None, first)
    again = deliver(client, sub_event("created", customer, org.subscription_id, created=2501))
    assert again.json_body["applied"] is True
    assert len(subs(emulator, customer)) == 1


def test_created_event_for_a_subscription_that_is_not_attached_marks_nothing(
    client: Any, svc: Container, customer: str, catalog: int, emulator: Any
) -> None:
    svc.store.put_org(Org("org1", plan="free", stripe_customer_id=customer))
    stray = svc.accounts_gateway().create_subscription(
        customer, "org1", [e.price_id for e in svc.accounts().catalog()], 3000, "stray")
    res = deliver(client, sub_event("created", customer, stray.subscription_id, created=3001))
    assert res.status_code == 200 and res.json_body["applied"] is False
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "free"


def test_deleting_a_subscription_that_is_not_the_orgs_does_not_mark_free(
    client: Any, svc: Container, customer: str
) -> None:
    svc.store.put_org(Org("org1", plan="pro", subscription_id="sub_current", plan_changed_at=1000))
    res = deliver(client, sub_event("deleted", customer, "sub_orphan", created=3000))
    assert res.status_code == 200 and res.json_body["applied"] is False
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro"


@pytest.mark.parametrize(
    "headers, why",
    [
        ({}, "missing"),
        ({"Stripe-Signature": "t=1,v1=deadbeef"}, "bad"),
    ],
)
def test_bad_or_missing_signature_is_400(client: Any, svc: Container, headers: dict[str, str], why: str) -> None:
    res = client.http.post(
        "/webhooks/stripe", body=b'{"id": "evt"}', headers={"Content-Type": "application/json", **headers}
    )
    assert res.status_code == 400 and "error" in res.json_body, why


def test_signature_with_wrong_secret_or_too_old_is_400(client: Any, svc: Container, customer: str) -> None:
    assert deliver(client, checkout(customer, "org1"), secret="whsec_other").status_code == 400
    assert deliver(client, checkout(customer, "org1"), at=svc.now() - 301).status_code == 400
    assert svc.store.get_org("org1") is None


def test_unknown_event_types_are_acknowledged_and_ignored(client: Any, svc: Container, customer: str) -> None:
    event = {"id": "evt_inv", "type": "invoice.paid", "created": 1, "data": {"object": {"id": "in_1"}}}
    res = deliver(client, event)
    assert res.status_code == 200 and res.json_body == {"received": True, "ignored": True}
    not_setup = checkout(customer, "org1")
    not_setup["data"]["object"]["metadata"]["type"] = "payment"
    assert deliver(client, not_setup).json_body["ignored"] is True


def test_missing_org_metadata_resolves_by_customer_else_unattributable(
    client: Any, svc: Container, customer: str, catalog: int, emulator: Any
) -> None:
    svc.store.put_org(Org("org1", plan="free", stripe_customer_id=customer))
    res = deliver(client, checkout(customer, None))
    assert res.status_code == 200 and res.json_body["org_id"] == "org1"
    org = svc.store.get_org("org1")
    assert org is not None and org.plan == "pro"
    stranger = deliver(client, sub_event("deleted", "cus_nobody", "sub_x", created=5000, org_id=None))
    assert stranger.status_code == 200 and stranger.json_body["unattributable"] is True


def test_malformed_but_signed_event_is_400(client: Any, svc: Container) -> None:
    assert deliver(client, {"type": "checkout.session.completed"}).status_code == 400
