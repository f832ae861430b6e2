"""The parity checker: the cell's scale events against the edge's usage-parity route, posted as a report."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cellkit.core.parity import ParityCheck, compare, last_settled_window
from cellkit.ports import CellStore, Clock, EdgeApi, TransportError

PARITY_PATH = "/internal/usage-parity"
REPORTS_PATH = "/internal/parity-reports"


class ParityError(RuntimeError):
    pass


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

    def edge_usage(self, start: int, end: int) -> dict[str, Decimal]:
        try:
            resp = self.edge.get(PARITY_PATH, [("from", str(start)), ("to", str(end))])
        except TransportError as exc:
            raise ParityError(f"usage-parity unreachable: {exc}") from None
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

    def post(self, report: ParityCheck) -> None:
        try:
            resp = self.edge.post_json(REPORTS_PATH, report.body())
        except TransportError as exc:
            raise ParityError(f"parity-reports unreachable: {exc}") from None
        if resp.status not in (200, 201, 202):
            raise ParityError(f"parity-reports answered {resp.status}: {resp.body[:200]!r}")
