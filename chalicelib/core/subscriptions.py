"""Which subscriptions an org keeps and which are cancelled: provisioning's decisions, pure.

The orchestration (lease, Stripe calls, store writes) is services/provisioning.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.orgs import Org

UPGRADE_CREDIT_CENTS = 3000


# Stripe's statuses that bill or can come back to billing; only these two are over for good.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    item_ids: tuple[str, ...]
    status: str
    org_id: str | None = None
    # `created` of the checkout that made it (metadata), else Stripe's own `created`.
    checkout_created: int = 0
    canceled_at: int | None = None

    @property
    def live(self) -> bool:
        return self.status not in ENDED_STATUSES


@dataclass(frozen=True)
class Checkout:
    org_id: str
    customer: str
    session_id: str
    created: int


def downgrade_cutoff(org: Org | None, attached: Subscription | None) -> int:
    """The latest known end of Pro: a stored downgrade, or the attached subscription's cancellation."""
    cutoff = org.plan_changed_at if org is not None and org.plan == "free" else 0
    if attached is not None and not attached.live and attached.canceled_at is not None:
        cutoff = max(cutoff, attached.canceled_at)
    return cutoff


def keeper(attached: Subscription | None, cutoff: int) -> str | None:
    """The subscription to keep: the attached one, if live and not from a superseded checkout."""
    if attached is None or not attached.live or attached.checkout_created < cutoff:
        return None
    return attached.subscription_id


def to_cancel(live: list[Subscription], keep: str | None, cutoff: int) -> list[str]:
    """With a keeper, every other live one; without, only those of checkouts older than the cutoff
    (a newer one belongs to a checkout whose retry will adopt it)."""
    return [
        s.subscription_id for s in live
        if s.subscription_id != keep and (keep is not None or s.checkout_created < cutoff)
    ]
