"""The edge's org record: the authority on plan and billing mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Plan = Literal["pro", "free"]
BillingMode = Literal["legacy", "unified"]


@dataclass(frozen=True)
class Org:
    org_id: str
    plan: Plan = "free"
    billing_mode: BillingMode = "legacy"
    stripe_customer_id: str | None = None
    max_memory_gb: int | None = None
    subscription_id: str | None = None
    subscription_item_ids: tuple[str, ...] = field(default_factory=tuple)
    # The one welcome credit's balance transaction: set once, so a retried upgrade never credits twice.
    credit_txn_id: str | None = None
    # Stripe event `created` of the last plan change: an older event never undoes a newer one.
    plan_changed_at: int = 0
    updated_at: int = 0


def default_max_memory_gb(plan: Plan) -> int:
    return 64 if plan == "pro" else 4
