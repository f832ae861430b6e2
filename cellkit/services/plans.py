"""Effective plan and the sandbox-create gate (CONTRACT section 8).

Plan: the cap-token's, else the edge's ``/internal/org-policy``, else the
cell's own org row, and that last one only when the edge is unreachable (an
edge that answers is the authority, even when it says "unknown org": free).
In edge mode a create needs a valid cap-token; without one it answers 401 and
tells the caller to create through the edge.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cellkit.core.captoken import CapToken, CapTokenInvalid, verify
from cellkit.ports import CellStore, Clock, EdgeApi, TransportError
from cellkit.services.ticker import OrgHalted, SandboxAlreadyRunning, Ticker

POLICY_PATH = "/internal/org-policy"
FREE_MAX_MEMORY_MB = 4096
PRO_MAX_MEMORY_MB = 65536
CREATE_THROUGH_EDGE = ("a valid cap-token is required: this cell's billing authority is the edge; "
                       "create the sandbox through the edge (it mints the cap-token)")


class EdgeUnreachable(Exception):
    pass


class Policy(BaseModel):
    model_config = ConfigDict(extra="ignore")

    plan: Literal["pro", "free"]
    maxMemoryMb: int = Field(ge=0)


@dataclass(frozen=True)
class EffectivePlan:
    plan: str
    source: Literal["cap-token", "edge", "cell", "default"]
    max_memory_mb: int


class EdgePolicy:
    def __init__(self, edge: EdgeApi) -> None:
        self.edge = edge

    def fetch(self, org_id: str) -> Policy | None:
        """The edge's policy; None for an org the edge does not know; EdgeUnreachable when it cannot answer."""
        try:
            resp = self.edge.get(POLICY_PATH, [("org_id", org_id)])
        except TransportError as exc:
            raise EdgeUnreachable(str(exc)) from None
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise EdgeUnreachable(f"org-policy answered {resp.status}")
        try:
            return Policy.model_validate(json.loads(resp.body))
        except (ValueError, ValidationError) as exc:
            raise EdgeUnreachable(f"org-policy body unusable: {exc}") from None


def _default_max(plan: str) -> int:
    return PRO_MAX_MEMORY_MB if plan == "pro" else FREE_MAX_MEMORY_MB


def effective_plan(org_id: str, token: CapToken | None, policy: EdgePolicy | None, store: CellStore,
                   log: logging.Logger) -> EffectivePlan:
    if token is not None:
        return EffectivePlan(token.plan, "cap-token", _default_max(token.plan))
    if policy is not None:
        try:
            found = policy.fetch(org_id)
        except EdgeUnreachable as exc:
            log.warning("org_policy_unreachable", extra={"org_id": org_id, "error": str(exc)})
        else:
            if found is None:
                return EffectivePlan("free", "edge", FREE_MAX_MEMORY_MB)
            return EffectivePlan(found.plan, "edge", found.maxMemoryMb)
    row = store.orgs([org_id]).get(org_id)
    if row is None:
        return EffectivePlan("free", "default", FREE_MAX_MEMORY_MB)
    return EffectivePlan(row.plan, "cell", row.max_memory_mb or _default_max(row.plan))


@dataclass(frozen=True)
class CreateRequest:
    sandbox_id: str
    org_id: str
    memory_mb: int
    cpu_count: int
    cap_token: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class SandboxGate:
    def __init__(self, authority: str, cell_id: str, jwt_secret: str | None, policy: EdgePolicy | None,
                 store: CellStore, ticker: Ticker, clock: Clock, log: logging.Logger) -> None:
        self.authority, self.cell_id, self.jwt_secret = authority, cell_id, jwt_secret
        self.policy, self.store, self.ticker, self.clock, self.log = policy, store, ticker, clock, log

    def _token(self, req: CreateRequest) -> CapToken | None:
        if req.cap_token is None or not self.jwt_secret:
            raise CapTokenInvalid("no cap-token")
        token = verify(req.cap_token, self.jwt_secret, self.clock.now_us() // 1_000_000, self.cell_id)
        if token.org_id != req.org_id:
            raise CapTokenInvalid("cap-token was minted for another org")
        return token

    def create(self, req: CreateRequest) -> Answer:
        ids = {"cell_id": self.cell_id, "org_id": req.org_id, "sandbox_id": req.sandbox_id}
        token: CapToken | None = None
        if self.authority == "edge" or req.cap_token is not None:
            try:
                token = self._token(req)
            except CapTokenInvalid as exc:
                self.log.warning("create_refused", extra=ids | {"reason": str(exc)})
                return Answer(401, {"error": f"{CREATE_THROUGH_EDGE} ({exc})"})
        plan = effective_plan(req.org_id, token, self.policy, self.store, self.log)
        if req.memory_mb > plan.max_memory_mb:
            return Answer(403, {"error": f"{req.memory_mb} MB exceeds the {plan.plan} plan's "
                                         f"{plan.max_memory_mb} MB"})
        try:
            self.ticker.start(req.sandbox_id, req.org_id, plan.plan, req.memory_mb, req.cpu_count)  # now, locked
        except SandboxAlreadyRunning:
            return Answer(409, {"error": f"sandbox {req.sandbox_id} is already running"})
        except OrgHalted:
            self.log.warning("create_refused", extra=ids | {"reason": "org halted: credits exhausted"})
            return Answer(403, {"error": f"org {req.org_id} is halted: its free credits are exhausted"})
        return Answer(201, {"sandbox_id": req.sandbox_id, "plan": plan.plan, "plan_source": plan.source})
