"""Stripe webhook events -> provisioning and plan changes (CONTRACT section 4).

The route verifies the signature on the raw body; this module gets the
verified event as plain JSON. Stripe delivers late, twice and out of order:
an event id already handled is acknowledged without effect, and a plan change
applies only if no newer one (by the event's `created`) is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.core.limits import MAX_ID_LENGTH, is_printable_id
from chalicelib.core.subscriptions import Checkout
from chalicelib.observability import logger
from chalicelib.ports import AccountStore
from chalicelib.services.provisioning import Provisioning
from chalicelib.stripe_ports import AccountGateway

CHECKOUT_COMPLETED = "checkout.session.completed"
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
# The Stripe endpoint must send exactly these; anything else is acknowledged and ignored.
HANDLED_TYPES = (CHECKOUT_COMPLETED, SUBSCRIPTION_CREATED, SUBSCRIPTION_DELETED)


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: str
    created: int
    object_id: str
    customer: str | None
    org_id: str | None
    setup: bool


class MalformedEvent(ValueError):
    pass


class UnusableEvent(MalformedEvent):
    """A signed event of a handled type whose fields the edge cannot use (wrong types, too long,
    control characters): Stripe's retries could never make it usable, so it is acknowledged and logged."""


_MAX_STRIPE_ID = 255


def _text(value: Any, name: str, max_length: int = _MAX_STRIPE_ID) -> str | None:
    """An id the edge stores, logs and puts in Stripe idempotency keys (HTTP headers): printable
    ASCII or absent; anything else is unusable."""
    if value is None or value == "":
        return None
    if not is_printable_id(value, max_length, ascii_only=True):
        raise UnusableEvent(f"{name} must be printable ASCII of at most {max_length} characters")
    return str(value)


def _mapping(parent: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnusableEvent(f"{name} is not an object")
    return value


def _created(value: Any) -> int:
    # Unix seconds as a JSON integer: a word, a list, NaN or 1e309 cannot order plan changes.
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**12:
        raise UnusableEvent("created must be unix seconds (an integer)")
    return value


def parse_event(payload: Any) -> WebhookEvent:
    """The fields the edge acts on; the org from metadata.org_id, else customer_metadata.org_id.

    Raises MalformedEvent when the body is not a Stripe event at all (400), UnusableEvent when
    a handled event's fields cannot be used (acknowledged). Types the edge ignores are not parsed
    further: their shape is none of its business.
    """
    if not isinstance(payload, dict):
        raise MalformedEvent("event is not a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    if not is_printable_id(event_id, _MAX_STRIPE_ID) or not is_printable_id(event_type, _MAX_STRIPE_ID):
        raise MalformedEvent("event lacks a printable id or type")
    if event_type not in HANDLED_TYPES:
        return WebhookEvent(event_id, event_type, 0, "", None, None, False)
    obj = _mapping(_mapping(payload, "data", "data"), "object", "data.object")
    metadata = _mapping(obj, "metadata", "metadata")
    customer_metadata = _mapping(obj, "customer_metadata", "customer_metadata")
    customer = obj.get("customer")
    if isinstance(customer, dict):  # an expanded customer object
        customer = customer.get("id")
    return WebhookEvent(
        event_id=event_id,
        type=event_type,
        created=_created(payload.get("created")),
        object_id=_text(obj.get("id"), "data.object.id") or "",
        customer=_text(customer, "customer"),
        org_id=_text(metadata.get("org_id"), "metadata.org_id", MAX_ID_LENGTH)
        or _text(customer_metadata.get("org_id"), "customer_metadata.org_id", MAX_ID_LENGTH),
        setup=metadata.get("type") == "setup",
    )


def resolve_org(event: WebhookEvent, store: AccountStore) -> str | None:
    if event.org_id:
        return event.org_id
    if event.customer:
        org = store.org_by_customer(event.customer)
        return org.org_id if org else None
    return None


def handle_event(
    payload: Any, store: AccountStore, gateway: AccountGateway, now: int, holder: str | None = None,
    after: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Apply one verified event; raises EmptyCatalog, ProvisioningConflict or a store/Stripe error to retry.

    `holder` names this invocation in the org's provisioning lease (a fresh one per call by default).
    `after(org_id, plan)` runs once the event is applied and before it is remembered, with the org's
    stored plan (the free tier's credits follow it), so a failure there has Stripe retry the event.
    """
    event = parse_event(payload)
    log = {"event_id": event.event_id, "event_type": event.type}
    if event.type not in HANDLED_TYPES or (event.type == CHECKOUT_COMPLETED and not event.setup):
        return {"received": True, "ignored": True}
    if store.event_seen(event.event_id):
        logger.info("webhook_duplicate", extra=log)
        return {"received": True, "duplicate": True}
    org_id = resolve_org(event, store)
    if org_id is None:
        logger.warning("webhook_unattributable", extra=log | {"customer": event.customer})
        store.remember_event(event.event_id, event.type, now)
        return {"received": True, "unattributable": True}
    result = apply(event, org_id, Provisioning(store, gateway, now, holder or uuid.uuid4().hex))
    org = store.get_org(org_id) if after is not None else None
    if after is not None and org is not None:
        after(org_id, org.plan)
    logger.info("webhook_applied", extra=log | {"org_id": org_id, **result})
    store.remember_event(event.event_id, event.type, now)
    return {"received": True, "org_id": org_id, **result}


def apply(event: WebhookEvent, org_id: str, p: Provisioning) -> dict[str, Any]:
    if event.type == CHECKOUT_COMPLETED:
        if not event.customer:
            raise MalformedEvent("checkout session has no customer")
        done = p.provision(Checkout(org_id, event.customer, event.object_id, event.created))
        return {"action": "provisioned", **done.body()}
    if event.type == SUBSCRIPTION_CREATED:
        if not event.customer:
            raise MalformedEvent("subscription has no customer")
        # Reconciles the org's subscriptions; marks pro only for the attached one (the checkout marks it).
        changed = p.subscription_created(org_id, event.customer, event.object_id, event.created)
        return {"action": "mark_pro", "applied": changed}
    # A deletion marks free only if it is the org's current subscription and no newer change is stored.
    changed = p.store.set_plan(org_id, "free", event.created, p.now, only_subscription=event.object_id)
    return {"action": "mark_free", "applied": changed}
