"""Pro upgrade provisioning: one subscription with every catalog price, one $30.00 credit, then pro.

Every step is find-or-create, so a retried, duplicated or concurrent delivery
converges on the same subscription and the same credit:
- the subscription is the org's stored one if still live, else one Stripe
  already has for this customer and org (a crash after creating it), else a
  new one under an idempotency key scoped to the org and checkout session;
- storing it is conditional; a loser of a race between two checkout sessions
  cancels the subscription it just made and lets Stripe retry;
- the credit is a balance transaction (it adds to the balance, never
  overwrites it), found by its metadata before one is created, and recorded
  on the org once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from chalicelib.catalog import CatalogEntry, EmptyCatalog
from chalicelib.observability import logger
from chalicelib.orgs import Org, Plan

UPGRADE_CREDIT_CENTS = 3000
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "incomplete"})


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    item_ids: tuple[str, ...]
    status: str

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


class ProvisioningConflict(Exception):
    """Another delivery stored a different subscription first; Stripe's retry will reuse it."""


class AccountGateway(ABC):
    """What provisioning needs from Stripe (implemented by the stripe-python adapter)."""

    @abstractmethod
    def subscription(self, subscription_id: str) -> Subscription | None: ...

    @abstractmethod
    def find_subscription(self, customer: str, org_id: str) -> Subscription | None: ...

    @abstractmethod
    def create_subscription(
        self, customer: str, org_id: str, price_ids: list[str], idempotency_key: str
    ) -> Subscription: ...

    @abstractmethod
    def cancel_subscription(self, subscription_id: str) -> None: ...

    @abstractmethod
    def find_credit(self, customer: str, org_id: str) -> str | None: ...

    @abstractmethod
    def create_credit(self, customer: str, org_id: str, amount_cents: int, idempotency_key: str) -> str: ...


class AccountStore(ABC):
    """The org-side state provisioning and the webhook change, each change a conditional write."""

    @abstractmethod
    def catalog(self) -> list[CatalogEntry]: ...

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def org_by_customer(self, customer: str) -> Org | None: ...

    @abstractmethod
    def attach_subscription(self, org_id: str, sub: Subscription, previous: str | None, now: int) -> bool:
        """Store `sub` unless the org already holds a subscription other than `previous` or `sub`."""

    @abstractmethod
    def record_credit(self, org_id: str, txn_id: str, now: int) -> bool:
        """Record the credit once; False if the org already has one."""

    @abstractmethod
    def set_plan(
        self, org_id: str, plan: Plan, changed_at: int, now: int,
        customer: str | None = None, only_subscription: str | None = None,
    ) -> bool:
        """Change the plan unless a newer change (Stripe `created`) is stored, or, with
        `only_subscription`, unless the org's current subscription is another one."""

    @abstractmethod
    def event_seen(self, event_id: str) -> bool: ...

    @abstractmethod
    def remember_event(self, event_id: str, event_type: str, now: int) -> None: ...


@dataclass(frozen=True)
class Provisioned:
    subscription_id: str
    items: int
    subscription_created: bool
    credit_txn_id: str
    credit_created: bool
    marked_pro: bool

    def body(self) -> dict[str, object]:
        return {
            "subscription": self.subscription_id,
            "items": self.items,
            "subscriptionCreated": self.subscription_created,
            "credit": self.credit_txn_id,
            "creditCreated": self.credit_created,
            "markedPro": self.marked_pro,
        }


def provision(
    org_id: str, customer: str, session_id: str, created: int,
    store: AccountStore, gateway: AccountGateway, now: int,
) -> Provisioned:
    entries = store.catalog()
    if not entries:
        raise EmptyCatalog("the price catalog is empty: run `python -m chalicelib.cli ensure-products`")
    org = store.get_org(org_id)
    sub, sub_created = _subscription(org_id, org, customer, session_id, entries, store, gateway, now)
    txn, credit_created = _credit(org_id, org, customer, store, gateway, now)
    marked = store.set_plan(org_id, "pro", created, now, customer=customer)
    return Provisioned(sub.subscription_id, len(sub.item_ids), sub_created, txn, credit_created, marked)


def _subscription(
    org_id: str, org: Org | None, customer: str, session_id: str, entries: list[CatalogEntry],
    store: AccountStore, gateway: AccountGateway, now: int,
) -> tuple[Subscription, bool]:
    previous = org.subscription_id if org else None
    if previous:
        stored = gateway.subscription(previous)
        if stored is not None and stored.live:
            return stored, False
    found = gateway.find_subscription(customer, org_id)
    sub = found or gateway.create_subscription(
        customer, org_id, [e.price_id for e in entries], idempotency_key=f"sub-create-{org_id}-{session_id}"
    )
    if not store.attach_subscription(org_id, sub, previous, now):
        if found is None:
            gateway.cancel_subscription(sub.subscription_id)
        logger.warning("subscription_race_lost", extra={"org_id": org_id, "subscription_id": sub.subscription_id})
        raise ProvisioningConflict(f"org {org_id} got another subscription concurrently; retry reuses it")
    return sub, found is None


def _credit(
    org_id: str, org: Org | None, customer: str, store: AccountStore, gateway: AccountGateway, now: int
) -> tuple[str, bool]:
    if org is not None and org.credit_txn_id:
        return org.credit_txn_id, False
    found = gateway.find_credit(customer, org_id)
    txn = found or gateway.create_credit(
        customer, org_id, -UPGRADE_CREDIT_CENTS, idempotency_key=f"upgrade-credit-{org_id}"
    )
    store.record_credit(org_id, txn, now)
    return txn, found is None
