"""An in-memory MeterEventGateway for fast tests: Stripe's meter-event rules, no HTTP."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from decimal import Decimal

from chalicelib.core.meter_events import MeterEvent, Outcome, SendResult
from chalicelib.stripe_ports import MeterEventGateway


class FakeStripe(MeterEventGateway):
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.seen: dict[str, MeterEvent] = {}
        self.totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.calls = 0
        self.faults: list[Outcome] = []
        self.accept_then_fail = 0
        self.in_flight: set[tuple[str, str]] = set()
        self.concurrency_violations = 0
        self.max_parallel = 0
        self._parallel = 0
        self._lock = threading.Lock()

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        key = (event.customer, event.event_name)
        with self._lock:
            self.calls += 1
            if key in self.in_flight:
                self.concurrency_violations += 1
                return SendResult(Outcome.RATE_LIMITED, "concurrent call for customer+meter", 0.01)
            self.in_flight.add(key)
            self._parallel += 1
            self.max_parallel = max(self.max_parallel, self._parallel)
        try:
            if self.latency:
                time.sleep(self.latency)
            with self._lock:
                if self.faults:
                    return SendResult(self.faults.pop(0), "injected", 0.01)
                if event.identifier in self.seen:
                    return SendResult(Outcome.DUPLICATE, f"An event already exists with identifier {event.identifier}")
                self.seen[event.identifier] = event
                self.totals[key] += Decimal(event.value)
                if self.accept_then_fail:
                    self.accept_then_fail -= 1
                    return SendResult(Outcome.RETRY, "connection dropped after accept")
                return SendResult(Outcome.SENT)
        finally:
            with self._lock:
                self.in_flight.discard(key)
                self._parallel -= 1
