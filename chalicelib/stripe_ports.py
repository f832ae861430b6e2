"""What the services ask of Stripe, as ports: metering, the catalog, provisioning, the cutover's calls.

Beside `ports.py` and under the same rules (typed Protocols over core types only). The stripe-python
adapters (adapters/stripe_gateway.py, stripe_events.py) implement them and translate every stripe-python
error into `GatewayError`, so no provider's exception crosses a port; tests use in-memory fakes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

from chalicelib.core.catalog import PriceSpec, StripeCatalog, StripePrice
from chalicelib.core.cutover.preflight import WebhookEndpoint
from chalicelib.core.meter_events import CancelResult, MeterEvent, SendResult
from chalicelib.core.subscriptions import Subscription


class GatewayError(Exception):
    """A payment provider's call failed, as its adapter translates it (no provider's own exception crosses a
    port): `status` is the HTTP status it answered, None when no answer came (a timeout, a reset)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MeterEventGateway(Protocol):
    """Stripe metering: one meter event, and what came of it."""

    @abstractmethod
    def send_meter_event(self, event: MeterEvent) -> SendResult: ...


class CatalogGateway(Protocol):
    """What ensure-products needs from Stripe."""

    @abstractmethod
    def stripe_catalog(self, lookup_keys: list[str], product_id: str) -> StripeCatalog: ...

    @abstractmethod
    def create_meter(self, event_name: str) -> str: ...

    @abstractmethod
    def create_product(self, product_id: str, name: str) -> None: ...

    @abstractmethod
    def create_price(self, spec: PriceSpec, product_id: str, meter_id: str) -> StripePrice: ...


class AccountGateway(Protocol):
    """What provisioning needs from Stripe."""

    @abstractmethod
    def subscription(self, subscription_id: str) -> Subscription | None: ...

    @abstractmethod
    def live_subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        """Every live subscription of `customer` tagged with `org_id`, from List (read-after-write)."""

    @abstractmethod
    def subscriptions(self, customer: str, org_id: str) -> list[Subscription]:
        """Every subscription of `customer` tagged with `org_id`, live or ended, from List."""

    @abstractmethod
    def create_subscription(
        self, customer: str, org_id: str, price_ids: list[str], checkout_created: int, idempotency_key: str
    ) -> Subscription: ...

    @abstractmethod
    def cancel_subscription(self, subscription_id: str) -> None: ...

    @abstractmethod
    def find_credit(self, customer: str, org_id: str) -> str | None: ...

    @abstractmethod
    def create_credit(
        self, customer: str, org_id: str, amount_cents: int, idempotency_key: str, fallback_key: str
    ) -> str:
        """Create under `idempotency_key`; if Stripe replays a server error stored under it, once more
        under `fallback_key` (the caller has just listed: no credit exists)."""


class CutoverStripe(Protocol):
    """What the cutover asks Stripe: the webhook endpoints, and meter event cancellations."""

    def webhook_endpoints(self) -> list[WebhookEndpoint]: ...

    def cancel_meter_event(self, event_name: str, identifier: str) -> CancelResult: ...


class StripeAccounts(AccountGateway, CatalogGateway, Protocol):
    """Provisioning and the catalog: one stripe-python adapter serves both."""
