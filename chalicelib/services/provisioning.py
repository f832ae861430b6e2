"""Pro upgrade provisioning: one live subscription with every catalog price, one $30.00 credit, then pro.

What must hold whatever the interleaving, crash point or Stripe failure: at
most one live subscription tagged with an org, and it is the org's attached
one; exactly one welcome credit; nothing live from a checkout older than a
later downgrade. It rests on three things, none of which needs a Lambda to
survive:

- a short lease on the org (a conditional write, longer than the API Lambda's
  timeout) serializes deliveries, so there is one actor per org at a time and
  find-before-create is safe; a delivery that finds the lease held answers
  409 and Stripe retries it;
- every create is preceded by a List (read-after-write; Search lags) of the
  customer's live subscriptions and credits, so a crash after Stripe created
  something is adopted, never duplicated; idempotency keys are per invocation,
  so a retry is never answered with a stale replay (a cancelled subscription
  reported "active", or a stored 5xx for 24 h);
- every path reconciles: each live subscription tagged with the org that is
  not the attached one is cancelled, so an orphan left by any crash is
  removed by the next delivery of any event for that org.

A checkout older than the org's last downgrade (a `customer.subscription.deleted`
stored with a newer `created`, or the attached subscription cancelled after
the checkout) is superseded: acknowledged, and only reconciled. So is a checkout
whose own subscription (or a newer checkout's) was cancelled before the edge
attached it: a retry must not subscribe a customer who has already cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.catalog import CatalogEntry, EmptyCatalog
from chalicelib.core.orgs import Org
from chalicelib.core.subscriptions import (
    UPGRADE_CREDIT_CENTS,
    Checkout,
    Subscription,
    downgrade_cutoff,
    keeper,
    to_cancel,
)
from chalicelib.observability import logger
from chalicelib.ports import AccountStore
from chalicelib.stripe_ports import AccountGateway

# Longer than the API Lambda's timeout (30 s, .chalice/config.json): once a lease has expired its
# holder is certainly dead, and a delivery stuck behind it waits at most this long.
LEASE_SECONDS = 120






class ProvisioningConflict(Exception):
    """Another delivery holds the org, or stored a subscription first; Stripe's retry reconciles."""


class _Superseded(Exception):
    """This checkout's Pro was already ended: acknowledge it and only reconcile."""






@dataclass(frozen=True)
class Provisioned:
    subscription_id: str | None
    items: int
    subscription_created: bool
    credit_txn_id: str | None
    credit_created: bool
    marked_pro: bool
    cancelled: tuple[str, ...] = ()
    superseded: bool = False

    def body(self) -> dict[str, object]:
        return {
            "subscription": self.subscription_id,
            "items": self.items,
            "subscriptionCreated": self.subscription_created,
            "credit": self.credit_txn_id,
            "creditCreated": self.credit_created,
            "markedPro": self.marked_pro,
            "cancelled": list(self.cancelled),
            "superseded": self.superseded,
        }


# --- pure decisions ------------------------------------------------------------------








# --- orchestration -------------------------------------------------------------------


@dataclass
class Provisioning:
    store: AccountStore
    gateway: AccountGateway
    now: int
    holder: str

    def provision(self, checkout: Checkout) -> Provisioned:
        entries = self.store.catalog()
        if not entries:
            raise EmptyCatalog("the price catalog is empty: run `python -m chalicelib.cli ensure-products`")
        with self._lease(checkout.org_id):
            return self._provision(checkout, entries)

    def subscription_created(self, org_id: str, customer: str, subscription_id: str, created: int) -> bool:
        """Reconcile, and mark pro only if `subscription_id` is the org's attached live subscription,
        its welcome credit made first (as the checkout does): marked pro before its credit by a checkout
        cut short, then cancelled before Stripe retried that checkout (now superseded), an org would have
        paid for its pro usage without the credit."""
        with self._lease(org_id):
            org = self.store.get_org(org_id)
            attached = self._attached(org)
            keep = self.reconcile(org_id, customer, org, attached)
            if keep != subscription_id:
                return False
            self._credit(org_id, org, customer)
            return self.store.set_plan(org_id, "pro", created, self.now, customer=customer)

    def reconcile(self, org_id: str, customer: str, org: Org | None, attached: Subscription | None) -> str | None:
        """Cancel every live org-tagged subscription but the keeper; detach a superseded attached one."""
        cutoff = downgrade_cutoff(org, attached)
        keep = keeper(attached, cutoff)
        self._cancel(org_id, customer, keep, cutoff)
        if attached is not None and keep is None:
            self.store.detach_subscription(org_id, attached.subscription_id, self.now)
        return keep

    # --- steps -----------------------------------------------------------------------

    def _lease(self, org_id: str) -> _Lease:
        return _Lease(self, org_id)

    def _attached(self, org: Org | None) -> Subscription | None:
        if org is None or not org.subscription_id:
            return None
        return self.gateway.subscription(org.subscription_id)

    def _provision(self, checkout: Checkout, entries: list[CatalogEntry]) -> Provisioned:
        org_id, customer = checkout.org_id, checkout.customer
        org = self.store.get_org(org_id)
        attached = self._attached(org)
        if checkout.created < downgrade_cutoff(org, attached):
            return self._superseded(checkout, org, attached)
        try:
            sub, created = self._subscription(checkout, org, attached, entries)
        except _Superseded:
            return self._superseded(checkout, org, attached)
        cancelled = self._cancel(org_id, customer, sub.subscription_id, 0)
        txn, credit_created = self._credit(org_id, org, customer)
        if self.store.set_plan(org_id, "pro", checkout.created, self.now, customer=customer):
            return Provisioned(sub.subscription_id, len(sub.item_ids), created, txn, credit_created, True, cancelled)
        # A newer change landed while we worked (a deletion, say): this checkout lost to it.
        org = self.store.get_org(org_id)
        return self._superseded(checkout, org, self._attached(org))

    def _superseded(self, checkout: Checkout, org: Org | None, attached: Subscription | None) -> Provisioned:
        keep = self.reconcile(checkout.org_id, checkout.customer, org, attached)
        logger.info("checkout_superseded", extra={"org_id": checkout.org_id, "session": checkout.session_id,
                                                   "checkout_created": checkout.created, "kept": keep})
        return Provisioned(keep, 0, False, org.credit_txn_id if org else None, False, False, superseded=True)

    def _subscription(
        self, checkout: Checkout, org: Org | None, attached: Subscription | None, entries: list[CatalogEntry]
    ) -> tuple[Subscription, bool]:
        if attached is not None and attached.live:
            return attached, False
        cutoff = downgrade_cutoff(org, attached)
        tagged = self.gateway.subscriptions(checkout.customer, checkout.org_id)
        if any(not s.live and s.checkout_created >= checkout.created for s in tagged):
            # What this checkout (or a newer one) made was cancelled before the edge attached it (the
            # customer, in Stripe's portal, ahead of the deletion webhook): another would bill them again.
            raise _Superseded
        adoptable = [s for s in tagged if s.live and s.checkout_created >= cutoff]
        sub = adoptable[0] if adoptable else self.gateway.create_subscription(
            checkout.customer, checkout.org_id, [e.price_id for e in entries], checkout.created,
            idempotency_key=f"sub-create-{checkout.org_id}-{checkout.session_id}-{self.holder}",
        )
        previous = org.subscription_id if org else None
        if not self.store.attach_subscription(checkout.org_id, sub, previous, self.now):
            # Only if our lease expired under us; the next delivery reconciles whatever we made.
            raise ProvisioningConflict(f"org {checkout.org_id} got another subscription concurrently")
        return sub, not adoptable

    def _cancel(self, org_id: str, customer: str, keep: str | None, cutoff: int) -> tuple[str, ...]:
        doomed = to_cancel(self.gateway.live_subscriptions(customer, org_id), keep, cutoff)
        for sub_id in doomed:
            self.gateway.cancel_subscription(sub_id)
            logger.warning("subscription_reconciled", extra={"org_id": org_id, "subscription_id": sub_id,
                                                              "kept": keep, "holder": self.holder})
        return tuple(doomed)

    def _credit(self, org_id: str, org: Org | None, customer: str) -> tuple[str, bool]:
        if org is not None and org.credit_txn_id:
            return org.credit_txn_id, False
        found = self.gateway.find_credit(customer, org_id)
        # One key per org: even two deliveries that both got past the lease (one presumed dead) make one
        # credit, because Stripe answers the second with the first's transaction.
        txn = found or self.gateway.create_credit(
            customer, org_id, -UPGRADE_CREDIT_CENTS, idempotency_key=f"upgrade-credit-{org_id}",
            fallback_key=f"upgrade-credit-{org_id}-{self.holder}",
        )
        self.store.record_credit(org_id, txn, self.now)
        return txn, found is None


class _Lease:
    """The org's provisioning lease as a context: 409 (ProvisioningConflict) if another delivery holds it."""

    def __init__(self, p: Provisioning, org_id: str) -> None:
        self.p, self.org_id = p, org_id

    def __enter__(self) -> None:
        if not self.p.store.claim_org(self.org_id, self.p.holder, self.p.now, self.p.now + LEASE_SECONDS):
            logger.info("provisioning_busy", extra={"org_id": self.org_id, "holder": self.p.holder})
            raise ProvisioningConflict(f"org {self.org_id} is being provisioned by another delivery; retry")

    def __exit__(self, *exc: object) -> None:
        self.p.store.release_org(self.org_id, self.p.holder)
