"""The parity checker: the cell's scale events against the edge's usage-parity route, posted as a report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cellkit.core.parity import ParityCheck, compare, last_settled_window
from cellkit.ports import CellStore, Clock, EdgeApi, TransportError

PARITY_PATH = "/internal/usage-parity"
REPORTS_PATH = "/internal/parity-reports"


class ParityError(RuntimeError):
    pass


class ParityNotSettled(ParityError):
    """The edge has not settled the window yet (503 with Retry-After, CONTRACT section 2): a wait, not a fault."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# How long one check waits in all for the edge to settle a window before leaving it to the next check.
WAIT_BUDGET_S = 900


def _retry_after(headers: object) -> int | None:
    for key, value in dict(headers or {}).items():  # type: ignore[call-overload]
        if str(key).lower() == "retry-after" and str(value).strip().isdigit():
            return int(str(value).strip())
    return None


class _Window(BaseModel):
    from_: int = Field(alias="from")
    to: int


class _OrgUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    org_id: str
    gb_seconds: Decimal = Field(ge=0)


class UsageParity(BaseModel):
    """CONTRACT 2: the edge's answer to GET /internal/usage-parity (validated: it decides a report)."""

    model_config = ConfigDict(extra="ignore")

    window: _Window
    orgs: list[_OrgUsage]


class ParityChecker:
    def __init__(self, store: CellStore, edge: EdgeApi, clock: Clock, log: logging.Logger,
                 tolerance: Decimal = Decimal("0.02"), grace_s: int = 600, width_s: int = 3600) -> None:
        self.store, self.edge, self.clock, self.log = store, edge, clock, log
        self.tolerance, self.grace, self.width = tolerance, grace_s, width_s
        self.sleep: Callable[[float], None] = time.sleep
        self.wait_budget_s = WAIT_BUDGET_S

    def edge_usage(self, start: int, end: int) -> dict[str, Decimal]:
        """The edge's answer; while it says "not settled yet", wait as it asks (within the budget) and ask again."""
        waited = 0
        while True:
            try:
                return self._edge_usage(start, end)
            except ParityNotSettled as exc:
                if waited + exc.retry_after > self.wait_budget_s:
                    raise
                self.log.info("parity_waiting_for_edge", extra={"cell_id": self.edge.cell_id, "from": start,
                                                                 "to": end, "retry_after": exc.retry_after})
                self.sleep(exc.retry_after)
                waited += exc.retry_after

    def _edge_usage(self, start: int, end: int) -> dict[str, Decimal]:
        try:
            resp = self.edge.get(PARITY_PATH, [("from", str(start)), ("to", str(end))])
        except TransportError as exc:
            raise ParityError(f"usage-parity unreachable: {exc}") from None
        retry_after = _retry_after(resp.headers)
        if resp.status == 503 and retry_after is not None:
            raise ParityNotSettled(f"usage-parity: [{start}, {end}) not settled yet, retry in {retry_after}s",
                                   retry_after)
        if resp.status != 200:
            raise ParityError(f"usage-parity answered {resp.status}: {resp.body[:200]!r}")
        try:
            body = UsageParity.model_validate(json.loads(resp.body, parse_float=Decimal))
        except (ValueError, ValidationError) as exc:
            raise ParityError(f"usage-parity body unusable: {exc}") from None
        if (body.window.from_, body.window.to) != (start, end):
            raise ParityError(f"usage-parity answered for {body.window}, asked [{start}, {end})")
        return {o.org_id: o.gb_seconds for o in body.orgs}

    def check(self, window: tuple[int, int] | None = None, post: bool = True) -> ParityCheck:
        now_us = self.clock.now_us()
        start, end = window or last_settled_window(now_us // 1_000_000, self.grace, self.width)
        edge = self.edge_usage(start, end)
        events = self.store.scale_events(start * 1_000_000, end * 1_000_000)
        orgs = self.store.orgs(sorted({e.org_id for e in events} | set(edge)))
        report = compare(self.edge.cell_id, (start, end), events, edge, orgs, now_us, self.tolerance)
        for org in report.orgs:
            if org.flagged(self.tolerance):
                self.log.warning("parity_drift", extra={
                    "cell_id": self.edge.cell_id, "org_id": org.org_id, "from": start, "to": end,
                    "cell_gb_seconds": str(org.cell_gb_seconds), "edge_gb_seconds": str(org.edge_gb_seconds),
                    "drift": str(org.drift)})
        self.log.info("parity_checked", extra={"cell_id": self.edge.cell_id, "from": start, "to": end,
                                                "orgs": len(report.orgs), "skipped_free": len(report.skipped_free),
                                                "clean": report.clean})
        if post:
            self.post(report)
        return report

    def scheduled_check(self) -> ParityCheck | None:
        """The run loop's check: a window the edge still has not settled is left to the next one, quietly."""
        try:
            return self.check()
        except ParityNotSettled as exc:
            self.log.info("parity_not_settled", extra={"cell_id": self.edge.cell_id, "error": str(exc)})
            return None

    def post(self, report: ParityCheck) -> None:
        try:
            resp = self.edge.post_json(REPORTS_PATH, report.body())
        except TransportError as exc:
            raise ParityError(f"parity-reports unreachable: {exc}") from None
        if resp.status not in (200, 201, 202):
            raise ParityError(f"parity-reports answered {resp.status}: {resp.body[:200]!r}")
