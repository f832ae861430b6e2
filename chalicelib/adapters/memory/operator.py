"""In-memory adapters of the operator's ports (operator_ports.py): the same answers as DynamoDB's."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal

from chalicelib.core.meter_error_report import MeterErrorReport
from chalicelib.operator_ports import FreeStatus, MeterErrorStore


@dataclass
class MemoryMeterErrors(MeterErrorStore):
    reports: dict[str, MeterErrorReport] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put_meter_error_report(self, report: MeterErrorReport) -> bool:
        with self.lock:
            if report.event_id in self.reports:
                return False
            self.reports[report.event_id] = report
            return True

    def meter_error_reports(self, limit: int = 50) -> list[MeterErrorReport]:
        with self.lock:
            ordered = sorted(self.reports.values(), key=lambda r: (-r.received_at, r.event_id))
        return ordered[:max(limit, 0)]


@dataclass
class MemoryFreeStatus(FreeStatus):
    """The free tier's halts and balances, as given. Until the free tier's own store lands (issue 22),
    this is also what a deployment reads: no org halted, no balance held."""

    halted: list[str] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=dict)

    def halted_orgs(self, limit: int = 50) -> list[str]:
        return sorted(self.halted)[:max(limit, 0)]

    def lowest_balances(self, limit: int = 10) -> list[tuple[str, Decimal]]:
        return sorted(self.balances.items(), key=lambda kv: (kv[1], kv[0]))[:max(limit, 0)]
