"""A meter event as Stripe takes it, and what came of sending or cancelling one.

The sender and the cutover decide on these outcomes; only the Stripe adapter
knows which stripe-python error maps to which.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    # Stripe has this identifier already: the event was delivered earlier (a lost answer, a crash).
    DUPLICATE = "duplicate"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class MeterEvent:
    event_name: str
    identifier: str
    customer: str
    value: str
    timestamp: int


@dataclass(frozen=True)
class CancelResult:
    ok: bool
    detail: str = ""
