"""The edge's decisions about an org a cell asks after (CONTRACT sections 5 and 10): its policy and its record.

The route and the operator CLI only translate: they parse what came in, call these, and render the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.core.cap_tokens import mint
from chalicelib.core.orgs import Org, default_max_memory_gb
from chalicelib.credit_ports import CreditStore
from chalicelib.ports import OrgStore
from chalicelib.services.credits import org_credits
from chalicelib.settings import Settings


class UnknownOrg(LookupError):
    """The edge holds no record of the org (answered 404)."""


@dataclass(frozen=True)
class OrgPolicy:
    """What a cell may do for an org: its plan and memory cap; on the free tier its balance and halt; and,
    when a cell asked and the org is not halted, a short-lived cap-token for that cell's sandbox creator."""

    org_id: str
    plan: str
    max_memory_mb: int
    halted: bool = False
    balance_cents: Decimal | None = None
    cap_token: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"org_id": self.org_id, "plan": self.plan, "maxMemoryMb": self.max_memory_mb,
                                "halted": self.halted}
        if self.balance_cents is not None:
            body["balance_cents"] = self.balance_cents
        if self.cap_token is not None:
            body["capToken"] = self.cap_token
        return body


def org_policy(orgs: OrgStore, credits: CreditStore, settings: Settings, org_id: str, cell_id: str | None,
               now: int) -> OrgPolicy:
    """The plan just resolved from the edge's record (the plan authority); raises UnknownOrg."""
    org = orgs.get_org(org_id)
    if org is None:
        raise UnknownOrg(f"org {org_id} is not known to the edge")
    max_gb = org.max_memory_gb or default_max_memory_gb(org.plan)
    halted, balance = False, None
    if org.plan != "pro":
        # The free tier (CONTRACT section 10): the balance less its open spend, and the halt.
        standing = org_credits(credits, settings, org_id)
        halted, balance = standing.halted, standing.balance_cents
    token = None
    if cell_id and not halted:  # a halted org gets no cap-token: no creates
        token = mint(settings.secret("SESSION_JWT_SECRET"), org_id, org.plan, cell_id, now)
    return OrgPolicy(org_id, org.plan, max_gb * 1024, halted, balance, token)


def put_org(orgs: OrgStore, org_id: str, fields: dict[str, Any], now: int) -> Org:
    """Create or update an org; fields left out keep their stored value (PUT /internal/orgs, `orgs put`)."""
    return orgs.update_org(org_id, fields, now)
