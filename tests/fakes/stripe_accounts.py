"""An in-memory AccountGateway with Stripe's rules: List is read-after-write, idempotency keys replay
the first answer (5xx included) for 24 h, cancelled subscriptions stay cancelled."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.core.subscriptions import Subscription
from chalicelib.stripe_ports import AccountGateway

IDEMPOTENCY_TTL = 86400


class Replayed5xx(Exception):
    """A server error Stripe stored under an idempotency key, answered again."""


@dataclass
class FakeAccountsGateway(AccountGateway):
    clock: Callable[[], int]
    subs: dict[str, Subscription] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # subscription -> customer
    credits: dict[str, list[tuple[str, str, int]]] = field(default_factory=lambda: defaultdict(list))
    keys: dict[str, tuple[int, Any]] = field(default_factory=dict)
    created_log: list[Subscription] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _replay(self, key: str, make: Callable[[], Any]) -> Any:
        now = self.clock()
        seen = self.keys.get(key)
        if seen is not None and now - seen[0] <= IDEMPOTENCY_TTL:
            if isinstance(seen[1], BaseException):
                raise Replayed5xx(str(seen[1]))
            return seen[1]
        result = make()
        self.keys[key] = (now, result)
        return result

    def remember_failure(self, key: str, exc: BaseException) -> None:
        """Stripe stores a 5xx under its key once the request began executing."""
        self.keys.setdefault(key, (self.clock(), exc))

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self.subs.get(subscription_id)

    def live_subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        return [s for s in self.subscriptions(customer, org_id) if s.live]

    def subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        return [s for sid, s in self.subs.items() if self.customers[sid] == customer and s.org_id == org_id]

    def create_subscription(
        self, customer: str, org_id: str, price_ids: list[str], checkout_created: int, idempotency_key: str
    ) -> Subscription:
        def make() -> Subscription:
            sid = f"sub_{next(self._ids)}"
            sub = Subscription(sid, tuple(f"si_{sid}_{p}" for p in price_ids), "active", org_id, checkout_created)
            self.subs[sid] = sub
            self.customers[sid] = customer
            self.created_log.append(sub)
            return sub

        made: Subscription = self._replay(idempotency_key, make)
        return made  # a replay answers the first result, as Stripe does, whatever happened since

    def cancel_subscription(self, subscription_id: str) -> None:
        sub = self.subs[subscription_id]
        if sub.live:
            self.subs[subscription_id] = replace(sub, status="canceled", canceled_at=self.clock())

    def find_credit(self, customer: str, org_id: str) -> str | None:
        return next((t for t, org, _ in self.credits[customer] if org == org_id), None)

    def create_credit(
        self, customer: str, org_id: str, amount_cents: int, idempotency_key: str, fallback_key: str
    ) -> str:
        def make() -> str:
            txn = f"cbtxn_{next(self._ids)}"
            self.credits[customer].append((txn, org_id, amount_cents))
            return txn

        try:
            made: str = self._replay(idempotency_key, make)
        except Replayed5xx:
            made = self._replay(fallback_key, make)
        return made
