"""An org record as the operator writes it and reads it back, the same at both edges that take one:
PUT /internal/orgs/{org_id} (api/internal_api.py) and `edge-billing orgs put` (cli.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chalicelib.core.limits import MAX_STRIPE_ID_LENGTH, printable
from chalicelib.core.orgs import Org


def _customer_id(value: str) -> str:
    return printable(value, "stripe_customer_id", MAX_STRIPE_ID_LENGTH, ascii_only=True)


class OrgBody(BaseModel):
    # Strict: "4" or true is not a memory size, and a number is not a customer id.
    model_config = ConfigDict(extra="forbid", strict=True)

    billing_mode: Literal["legacy", "unified"]
    plan: Literal["pro", "free"] | None = None
    stripe_customer_id: Annotated[str, AfterValidator(_customer_id)] | None = None
    max_memory_gb: int | None = Field(default=None, ge=1, le=4096)


# What an operator or a cell sees of an org: not its Stripe subscription items, credit or ordering stamps.
SHOWN_FIELDS = ("org_id", "plan", "billing_mode", "stripe_customer_id", "max_memory_gb", "subscription_id",
                "updated_at")


def org_body(org: Org) -> dict[str, object]:
    return {name: getattr(org, name) for name in SHOWN_FIELDS}
