"""In-memory AccountStore: the same conditional semantics as DynamoAccounts, for fast logic tests.

tests/contract/test_account_store.py runs one suite against both, so this
one cannot drift from the DynamoDB adapter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from chalicelib.core.catalog import CatalogEntry
from chalicelib.core.orgs import Org, Plan
from chalicelib.core.subscriptions import Subscription
from chalicelib.ports import AccountStore, CatalogStore


@dataclass(frozen=True)
class _Lease:
    holder: str
    until: int


class MemoryAccounts(AccountStore, CatalogStore):
    def __init__(self) -> None:
        self.orgs: dict[str, Org] = {}
        self.leases: dict[str, _Lease] = {}
        self.entries: list[CatalogEntry] = []
        self.events: dict[str, str] = {}
        # One lock per store: each method is one atomic conditional write, as in DynamoDB.
        self._lock = threading.RLock()

    def put_org(self, org: Org) -> Org:
        with self._lock:
            self.orgs[org.org_id] = org
            return org

    def catalog(self) -> list[CatalogEntry]:
        with self._lock:
            return list(self.entries)

    def publish_catalog(self, entries: list[CatalogEntry], now: int) -> None:
        if not entries:
            raise ValueError("refusing to publish an empty catalog")
        with self._lock:
            self.entries = sorted(entries, key=lambda e: e.key)

    def get_org(self, org_id: str) -> Org | None:
        with self._lock:
            return self.orgs.get(org_id)

    def org_by_customer(self, customer: str) -> Org | None:
        with self._lock:
            return next((o for o in self.orgs.values() if o.stripe_customer_id == customer), None)

    def _org(self, org_id: str) -> Org:
        # UpdateItem creates the item when the condition allows it; so does this.
        return self.orgs.get(org_id) or Org(org_id)

    def claim_org(self, org_id: str, holder: str, now: int, until: int) -> bool:
        with self._lock:
            lease = self.leases.get(org_id)
            if lease is not None and lease.until > now and lease.holder != holder:
                return False
            self.orgs[org_id] = self._org(org_id)
            self.leases[org_id] = _Lease(holder, until)
            return True

    def release_org(self, org_id: str, holder: str) -> None:
        with self._lock:
            lease = self.leases.get(org_id)
            if lease is not None and lease.holder == holder:
                del self.leases[org_id]

    def attach_subscription(self, org_id: str, sub: Subscription, previous: str | None, now: int) -> bool:
        with self._lock:
            org = self._org(org_id)
            if org.subscription_id not in (None, sub.subscription_id, previous):
                return False
            items = sub.item_ids or org.subscription_item_ids
            self.orgs[org_id] = replace(org, subscription_id=sub.subscription_id, subscription_item_ids=items,
                                        updated_at=now)
            return True

    def detach_subscription(self, org_id: str, subscription_id: str, now: int) -> bool:
        with self._lock:
            org = self.orgs.get(org_id)
            if org is None or org.subscription_id != subscription_id:
                return False
            self.orgs[org_id] = replace(org, subscription_id=None, subscription_item_ids=(), updated_at=now)
            return True

    def record_credit(self, org_id: str, txn_id: str, now: int) -> bool:
        with self._lock:
            org = self._org(org_id)
            if org.credit_txn_id not in (None, txn_id):
                return False
            self.orgs[org_id] = replace(org, credit_txn_id=txn_id, updated_at=now)
            return True

    def set_plan(
        self, org_id: str, plan: Plan, changed_at: int, now: int,
        customer: str | None = None, only_subscription: str | None = None,
    ) -> bool:
        with self._lock:
            org = self._org(org_id)
            if org.plan_changed_at > changed_at:
                return False
            if only_subscription and org.subscription_id not in (None, only_subscription):
                return False
            org = replace(org, plan=plan, plan_changed_at=changed_at, updated_at=now,
                          stripe_customer_id=org.stripe_customer_id or customer)
            if plan == "free" and only_subscription:
                org = replace(org, subscription_id=None, subscription_item_ids=())
            self.orgs[org_id] = org
            return True

    def event_seen(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self.events

    def remember_event(self, event_id: str, event_type: str, now: int) -> None:
        with self._lock:
            self.events[event_id] = event_type
