"""The cell's settings, from the environment, validated once at start-up (pydantic at the edge)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARITY_ROUTE = "/internal/usage-parity"


class SettingsError(ValueError):
    pass


class CellSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    CELL_ID: str = Field(default="cell-local", min_length=1, max_length=64)
    WORKER_ID: str = Field(default="worker-1", min_length=1, max_length=64)
    CELL_DATABASE_URL: str = "sqlite://.local/cell.db"
    EDGE_URL: str | None = None
    OPENSANDBOX_USAGE_PARITY_URL: str | None = None
    EVENT_SECRET: str | None = None
    SESSION_JWT_SECRET: str | None = None
    STRIPE_API_KEY: str | None = None
    STRIPE_API_BASE: str | None = None
    STRIPE_MAX_NETWORK_RETRIES: int = Field(default=2, ge=0, le=10)
    PRO_BILLING_AUTHORITY: str = "cell"
    TICK_SECONDS: float = Field(default=20.0, gt=0)
    FORWARD_BATCH: int = Field(default=500, ge=1, le=1000)
    FORWARD_IDLE_SECONDS: float = Field(default=1.0, gt=0)
    BILLERS_SECONDS: float = Field(default=300.0, gt=0)
    STATUS_SECONDS: float = Field(default=60.0, gt=0)
    PARITY_SECONDS: float = Field(default=3600.0, gt=0)
    # One request to the edge may take this long (urllib's timeout, per socket operation).
    EDGE_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    # After SIGTERM, `run` waits this long at most for its loops (a request in flight) before exiting.
    SHUTDOWN_SECONDS: float = Field(default=10.0, ge=0, le=14)
    PARITY_TOLERANCE: Decimal = Field(default=Decimal("0.02"), ge=0)
    # Must match the edge's GRACE_SECONDS: parity and settling look only at hours the edge has closed.
    GRACE_SECONDS: int = Field(default=600, ge=0)
    SETTLE_SECONDS: int = Field(default=600, ge=0)
    BUCKET_SECONDS: int = 3600
    # The free tier's halts (CONTRACT section 10): where the edge pushes halt-org / resume-org (sent with
    # the cell's status), the port `run` serves them on (none: the control plane mounts the handler),
    # and how often the cell pulls the edge's halted list.
    ADMIN_BASE_URL: str | None = None
    ADMIN_PORT: int | None = Field(default=None, ge=0, le=65535)
    HALT_RECONCILE_SECONDS: float = Field(default=60.0, gt=0)

    @property
    def authority(self) -> Literal["cell", "edge"]:
        # CONTRACT 6/8: exactly "edge" hands billing to the edge; anything else keeps the cell billing,
        # "edge " and "EDGE" included (no stripping, no case folding). `inexact_flags` names such a value.
        return "edge" if self.PRO_BILLING_AUTHORITY == "edge" else "cell"

    def inexact_flags(self) -> list[tuple[str, str]]:
        """(flag, value) for a money flag set to anything but one of its exact values (logged at start)."""
        value = self.PRO_BILLING_AUTHORITY
        return [] if value in ("cell", "edge") else [("PRO_BILLING_AUTHORITY", value)]

    @property
    def edge_base(self) -> str | None:
        if self.EDGE_URL:
            return self.EDGE_URL.rstrip("/")
        if self.OPENSANDBOX_USAGE_PARITY_URL:
            return self.OPENSANDBOX_USAGE_PARITY_URL.rstrip("/").removesuffix(PARITY_ROUTE)
        return None

    @property
    def parity_base(self) -> str | None:
        """Where parity is read and reported: OPENSANDBOX_USAGE_PARITY_URL's base when set, else EDGE_URL."""
        if self.OPENSANDBOX_USAGE_PARITY_URL:
            return self.OPENSANDBOX_USAGE_PARITY_URL.rstrip("/").removesuffix(PARITY_ROUTE)
        return self.edge_base

    def secret(self, name: Literal["EVENT_SECRET", "SESSION_JWT_SECRET", "STRIPE_API_KEY"]) -> str:
        value = getattr(self, name)
        if not value:
            raise SettingsError(f"{name} is not set")
        return str(value)


def load(environ: dict[str, str] | None = None) -> CellSettings:
    env = dict(os.environ if environ is None else environ)
    try:
        return CellSettings.model_validate({k: v for k, v in env.items() if k in CellSettings.model_fields})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid cell settings: " + "; ".join(problems)) from None
