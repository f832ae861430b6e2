"""The ports of the operator's view (CONTRACT 11): Stripe's meter error reports, and the free tier's state.

Kept beside `ports.py` (same rules: Protocols over core types only) so the page's needs stay in one place.
"""

from __future__ import annotations

from abc import abstractmethod
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.core.meter_error_report import MeterErrorReport


class MeterErrorStore(Protocol):
    """Stripe's meter error reports, as received (control table)."""

    @abstractmethod
    def put_meter_error_report(self, report: MeterErrorReport) -> bool:
        """Store a report once; False if its event id is stored already (Stripe redelivers)."""

    @abstractmethod
    def meter_error_reports(self, limit: int = 50) -> list[MeterErrorReport]:
        """The newest first (by the time the edge received them)."""


class MeterErrorGateway(Protocol):
    """Stripe's thin events: verified as stripe-python verifies them, then fetched."""

    @abstractmethod
    def parse_thin_event(self, payload: bytes, signature: str, secret: str) -> tuple[str, str]:
        """(event id, type); raises ValueError when the signature or the body is not Stripe's."""

    @abstractmethod
    def fetch_event(self, event_id: str) -> dict[str, Any]:
        """The full event (`/v2/core/events/{id}`) as a plain dict."""


class WebhookVerifier(Protocol):
    """Stripe's snapshot-event signature, checked as stripe-python checks it (the timestamp is the route's)."""

    @abstractmethod
    def verify(self, payload: bytes, header: str, secret: str) -> None:
        """Raises ValueError naming what is wrong when `header` is not Stripe's signature of `payload`."""


class FreeStatus(Protocol):
    """What the operator's page shows of the free tier: halted orgs and the lowest balances."""

    @abstractmethod
    def halted_orgs(self, limit: int = 50) -> list[str]: ...

    @abstractmethod
    def lowest_balances(self, limit: int = 10) -> list[tuple[str, Decimal]]:
        """(org id, balance in dollars), lowest first."""
