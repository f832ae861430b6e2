"""Provisioning under every crash point, interleaving and Stripe failure, enumerated (no threads, no timing).

For each step k of delivery A (every store or Stripe call it makes) and each thing that can happen
there, the test runs that thing at step k, then redelivers every event that has not been answered
2xx (as Stripe does: the two checkouts, a `customer.subscription.created` for each subscription
made, a `deleted` for each cancellation by the customer) until all are answered, and checks:
at most one live subscription tagged with the org and it is the attached one; exactly one welcome
credit; nothing live from a checkout older than an applied deletion; pro exactly when one is live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.adapters.memory.accounts import MemoryAccounts
from chalicelib.core.catalog import CatalogEntry
from chalicelib.core.orgs import Org
from chalicelib.core.subscriptions import Subscription
from chalicelib.ports import StoreUnavailable
from chalicelib.services.provisioning import LEASE_SECONDS
from chalicelib.services.webhook import handle_event
from chalicelib.stripe_ports import GatewayError
from tests.fakes.stripe_accounts import IDEMPOTENCY_TTL, FakeAccountsGateway

T = 1_000_000
CUSTOMER = "cus_1"
ORG = "org1"
GATEWAY_METHODS = {"subscription", "live_subscriptions", "subscriptions", "create_subscription",
                   "cancel_subscription", "find_credit", "create_credit"}


class LambdaDied(BaseException):
    """Not an Exception: nothing in the handler may catch the end of its process."""


class Clock:
    def __init__(self, now: int) -> None:
        self.t = now

    def __call__(self) -> int:
        return self.t


def checkout(event_id: str, session: str, created: int) -> dict[str, Any]:
    return {"id": event_id, "type": "checkout.session.completed", "created": created,
            "data": {"object": {"id": session, "customer": CUSTOMER,
                                "metadata": {"type": "setup", "org_id": ORG}}}}


def sub_event(kind: str, sub_id: str, created: int) -> dict[str, Any]:
    return {"id": f"evt_{kind}_{sub_id}", "type": f"customer.subscription.{kind}", "created": created,
            "data": {"object": {"id": sub_id, "customer": CUSTOMER, "metadata": {"org_id": ORG}}}}


@dataclass
class World:
    clock: Clock
    store: MemoryAccounts
    gateway: FakeAccountsGateway
    events: list[dict[str, Any]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    applied_deletions: list[int] = field(default_factory=list)
    invocations: int = 0

    def queue(self, event: dict[str, Any]) -> None:
        if all(e["id"] != event["id"] for e in self.events):
            self.events.append(event)

    def deliver(self, event: dict[str, Any], store: Any = None, gateway: Any = None) -> bool:
        """One delivery; True if answered 2xx. Any exception (or death) is a non-2xx: Stripe retries."""
        self.queue(event)
        self.invocations += 1
        try:
            out = handle_event(event, store or self.store, gateway or self.gateway, self.clock(),
                               holder=f"inv{self.invocations}")
        except (Exception, LambdaDied):
            return False
        if event["type"].endswith("deleted") and out.get("applied"):
            self.applied_deletions.append(event["created"])
        self.done.add(event["id"])
        return True

    def customer_cancels(self) -> None:
        live = sorted(s.subscription_id for s in self.gateway.subs.values() if s.live)
        if live:
            self.gateway.cancel_subscription(live[-1])
            self.queue(sub_event("deleted", live[-1], self.clock()))

    def settle(self, late: bool) -> None:
        """Redeliver until every event (and a `created` per subscription made) was answered 2xx."""
        for round_ in range(12):
            self.clock.t += LEASE_SECONDS + 1 + (IDEMPOTENCY_TTL if late and round_ == 0 else 0)
            for sub in self.gateway.created_log:
                self.queue(sub_event("created", sub.subscription_id, sub.checkout_created + 1))
            pending = [e for e in self.events if e["id"] not in self.done]
            if not pending:
                return
            for event in pending:
                self.deliver(event)
        raise AssertionError(f"events still failing after 12 rounds: {[e['id'] for e in self.events]}")

    def check(self) -> None:
        org = self.store.get_org(ORG)
        assert org is not None
        live = [s for s in self.gateway.subs.values() if s.live and s.org_id == ORG]
        assert len(live) <= 1, f"two live subscriptions: {live}"
        if live:
            assert org.subscription_id == live[0].subscription_id, (org, live)
        assert len(self.gateway.credits[CUSTOMER]) == 1, self.gateway.credits[CUSTOMER]
        assert org.credit_txn_id == self.gateway.credits[CUSTOMER][0][0]
        for deleted_at in self.applied_deletions:
            assert all(s.checkout_created >= deleted_at for s in live), (deleted_at, live)
        assert org.plan == ("pro" if live else "free"), (org, live)


class Step:
    """Interposes on the ports of one delivery: counts its calls and does `action` at call k."""

    def __init__(self, target: Any, world: World, counter: list[int], k: int,
                 action: Callable[[World, str, Callable[[], Any], dict[str, Any]], Any]) -> None:
        self._target, self._world, self._counter, self._k, self._action = target, world, counter, k, action

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counter[0] += 1
            self._world.clock.t += 1
            if self._counter[0] == self._k:
                return self._action(self._world, name, lambda: attr(*args, **kwargs), kwargs)
            return attr(*args, **kwargs)

        return call


# --- what can happen at a step ----------------------------------------------------------------------

def crash_before(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    raise LambdaDied(name)


def crash_after(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    run()
    raise LambdaDied(name)


def second_checkout(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    w.deliver(checkout("evt_b", "cs_b", T + 1))
    return run()


def second_checkout_after_lease(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    # A is presumed dead (its lease expired) but still runs: reconciliation alone must hold.
    w.clock.t += LEASE_SECONDS + 1
    w.deliver(checkout("evt_b", "cs_b", T + 1))
    return run()


def customer_cancels(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    w.customer_cancels()
    return run()


def stripe_500(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    if name not in GATEWAY_METHODS:
        raise StoreUnavailable(f"{name}: ProvisionedThroughputExceededException")
    exc = GatewayError("Injected server error.", 500)
    if "idempotency_key" in kw:
        w.gateway.remember_failure(kw["idempotency_key"], exc)
    raise exc


def stripe_429(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    raise GatewayError("Too many requests.", 429)


def timeout(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    raise GatewayError("Request timed out.")


def accepted_answer_lost(w: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
    run()
    raise GatewayError("Connection reset after the request was sent.")


ACTIONS = [crash_before, crash_after, second_checkout, second_checkout_after_lease, customer_cancels,
           stripe_500, stripe_429, timeout, accepted_answer_lost]


def fresh_org(w: World) -> None:
    w.store.put_org(Org(ORG, stripe_customer_id=CUSTOMER))


def downgraded_org(w: World) -> None:
    """Pro once (credit given), then cancelled: the next checkout is a re-upgrade."""
    old = Subscription("sub_old", ("si_old",), "canceled", ORG, T - 5000, canceled_at=T - 100)
    w.gateway.subs[old.subscription_id] = old
    w.gateway.customers[old.subscription_id] = CUSTOMER
    w.gateway.credits[CUSTOMER].append(("cbtxn_old", ORG, -3000))
    w.store.put_org(Org(ORG, plan="free", stripe_customer_id=CUSTOMER, credit_txn_id="cbtxn_old",
                        plan_changed_at=T - 100))


def world(setup: Callable[[World], None]) -> World:
    clock = Clock(T + 100)
    w = World(clock, MemoryAccounts(), FakeAccountsGateway(clock))
    w.store.publish_catalog([CatalogEntry("tier_1024", "price_1", "lk_1", "m_1"),
                             CatalogEntry("overage", "price_2", "lk_2", "m_2")], 0)
    setup(w)
    return w


def steps_of_a(setup: Callable[[World], None]) -> int:
    """How many port calls an undisturbed delivery A makes (the k to enumerate)."""
    w = world(setup)
    counter = [0]
    noop = lambda w_, n, run, kw: run()  # noqa: E731
    assert w.deliver(checkout("evt_a", "cs_a", T),
                     Step(w.store, w, counter, 0, noop), Step(w.gateway, w, counter, 0, noop))
    return counter[0]


def scenario(setup: Callable[[World], None], k: int, action: Callable[..., Any], late: bool) -> World:
    w = world(setup)
    counter = [0]
    a = checkout("evt_a", "cs_a", T)
    w.deliver(a, Step(w.store, w, counter, k, action), Step(w.gateway, w, counter, k, action))
    w.queue(checkout("evt_b", "cs_b", T + 1))  # B is sent whether or not it ran inside A
    w.settle(late)
    return w


CASES = [
    (setup, k, action, late)
    for setup in (fresh_org, downgraded_org)
    for k in range(1, steps_of_a(setup) + 1)
    for action in ACTIONS
    for late in (False, True)
]


@pytest.mark.parametrize(
    "setup, k, action, late", CASES,
    ids=[f"{s.__name__}-k{k}-{a.__name__}-{'late' if late else 'soon'}" for s, k, a, late in CASES],
)
def test_every_step_and_failure_converges(
    setup: Callable[[World], None], k: int, action: Callable[..., Any], late: bool
) -> None:
    scenario(setup, k, action, late).check()


def test_the_enumeration_covers_every_call_of_a_delivery() -> None:
    # A delivery into a fresh org: lease, org, catalog, list, create, attach, list, credit..., plan, release.
    assert steps_of_a(fresh_org) >= 10
    assert len(CASES) >= 2 * 10 * len(ACTIONS) * 2


def test_a_checkout_that_lost_and_is_retried_after_a_cancellation_creates_nothing() -> None:
    w = world(fresh_org)
    assert w.store.claim_org(ORG, "someone-else", w.clock(), w.clock() + LEASE_SECONDS)
    assert not w.deliver(checkout("evt_a", "cs_a", T))  # 409: Stripe keeps retrying A for 3 days
    w.store.release_org(ORG, "someone-else")
    assert w.deliver(checkout("evt_b", "cs_b", T + 1))
    (sub,) = w.gateway.subs.values()
    w.clock.t += 10
    w.customer_cancels()
    (deletion,) = [e for e in w.events if e["type"].endswith("deleted")]
    assert w.deliver(deletion)
    w.clock.t += 3 * 86400  # past the 24 h idempotency window
    assert w.deliver(checkout("evt_a", "cs_a", T))
    assert list(w.gateway.subs) == [sub.subscription_id], "a retry of an old checkout made a subscription"
    org = w.store.get_org(ORG)
    assert org is not None and org.plan == "free"
    w.check()


@pytest.mark.parametrize("status", ["unpaid", "paused", "past_due", "incomplete", "trialing"])
def test_a_stored_subscription_that_still_bills_is_kept_not_replaced(status: str) -> None:
    w = world(fresh_org)
    assert w.deliver(checkout("evt_a", "cs_a", T))
    (sid,) = w.gateway.subs
    w.gateway.subs[sid] = Subscription(sid, ("si",), status, ORG, T)
    assert w.deliver(checkout("evt_b", "cs_b", T + 1))
    assert list(w.gateway.subs) == [sid]
    w.check()


def test_an_orphan_left_by_a_dead_lambda_is_cancelled_by_the_next_event() -> None:
    w = world(fresh_org)
    orphan = w.gateway.create_subscription(CUSTOMER, ORG, ["price_1"], T, "sub-create-dead")
    assert w.deliver(checkout("evt_b", "cs_b", T + 1))  # adopts the orphan rather than making another
    org = w.store.get_org(ORG)
    assert org is not None and org.subscription_id == orphan.subscription_id
    extra = w.gateway.create_subscription(CUSTOMER, ORG, ["price_1"], T, "sub-create-dead-2")
    assert w.deliver(sub_event("created", extra.subscription_id, T + 2))
    assert not w.gateway.subs[extra.subscription_id].live
    w.check()


def test_a_checkout_retried_after_the_customer_cancelled_what_it_made_makes_nothing_more() -> None:
    # Found by tests/simulation/test_webhook_simulation.py: the first delivery died after Stripe made
    # the subscription and before the edge attached it; the customer cancelled it in Stripe's portal;
    # the retry, before the deletion webhook, must not subscribe the customer again.
    w = world(fresh_org)
    a_dies_after(w, "create_subscription")
    w.clock.t += LEASE_SECONDS + 1
    w.customer_cancels()
    assert w.deliver(checkout("evt_a", "cs_a", T))
    assert not any(s.live for s in w.gateway.subs.values()), "the retry subscribed a customer who cancelled"
    w.settle(late=False)
    org = w.store.get_org(ORG)
    assert org is not None and org.plan == "free" and org.subscription_id is None
    assert not any(s.live for s in w.gateway.subs.values())


def test_an_org_is_never_pro_without_its_welcome_credit() -> None:
    # Found by the webhook simulation at 1,000 scenarios: a checkout died after attaching its subscription
    # and before the credit; `customer.subscription.created` then marked the org pro; the customer used pro
    # and cancelled before Stripe retried the checkout, which was then superseded: pro usage billed, no credit.
    w = world(fresh_org)
    a_dies_after(w, "attach_subscription")
    (sub,) = w.gateway.subs.values()
    w.clock.t += LEASE_SECONDS + 1
    assert w.deliver(sub_event("created", sub.subscription_id, T + 1))  # the credit first, then pro
    org = w.store.get_org(ORG)
    assert org is not None and org.plan == "pro" and org.credit_txn_id == w.gateway.credits[CUSTOMER][0][0]
    w.clock.t += 10
    w.customer_cancels()
    (deletion,) = [e for e in w.events if e["type"].endswith("deleted")]
    assert w.deliver(deletion)
    assert w.deliver(checkout("evt_a", "cs_a", T))  # Stripe's retry, superseded: nothing more made
    org = w.store.get_org(ORG)
    assert org is not None and org.plan == "free" and len(w.gateway.credits[CUSTOMER]) == 1
    assert not any(s.live for s in w.gateway.subs.values())


def a_dies_after(w: World, call: str) -> None:
    """Checkout A's first delivery: its Lambda dies right after the port call named `call`."""
    counter = [0]
    k = 1 + _calls_of_a().index(call)
    assert not w.deliver(checkout("evt_a", "cs_a", T),
                         Step(w.store, w, counter, k, crash_after), Step(w.gateway, w, counter, k, crash_after))


def _calls_of_a() -> list[str]:
    """The port calls of an undisturbed delivery A into a fresh org, in order."""
    w = world(fresh_org)
    names: list[str] = []

    def note(w_: World, name: str, run: Callable[[], Any], kw: dict[str, Any]) -> Any:
        return run()

    class Named(Step):
        def __getattr__(self, name: str) -> Any:
            attr = super().__getattr__(name)
            if callable(attr):
                names.append(name)
            return attr

    counter = [0]
    assert w.deliver(checkout("evt_a", "cs_a", T), Named(w.store, w, counter, 0, note),
                     Named(w.gateway, w, counter, 0, note))
    return names
