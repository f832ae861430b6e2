"""The ticker and the sandbox lifecycle: ticks and scale events, written to the spool atomically.

Every tick is spooled in the same transaction that advances the sandbox's
cursor (a compare-and-set on the old value, only for the owning worker of a
running sandbox). So a crash loses no tick and produces none twice, and two
workers that both believe they own a sandbox can never both tick the same
interval: the loser's compare-and-set fails and its envelope is not written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

from cellkit.core.ticker import Sandbox, TickPlan, plan_tick, tick_envelope
from cellkit.core.usage import ScaleEvent
from cellkit.ports import CellStore, Clock, SpoolItem, Tx


@dataclass(frozen=True)
class TickRun:
    ticked: int
    lost_race: int
    skipped_us: int


def _spool_item(plan: TickPlan, cell_id: str) -> SpoolItem:
    env = tick_envelope(plan, cell_id)
    return SpoolItem(env["id"], json.dumps(env, separators=(",", ":")))


def scale_event_id(sandbox_id: str, started_us: int) -> str:
    return f"{sandbox_id}:{started_us}"


class SandboxNotRunning(LookupError):
    pass


class SandboxAlreadyRunning(ValueError):
    pass


class Ticker:
    def __init__(self, store: CellStore, cell_id: str, worker_id: str, clock: Clock, log: logging.Logger) -> None:
        self.store, self.cell_id, self.worker_id, self.clock, self.log = store, cell_id, worker_id, clock, log

    def tick(self) -> TickRun:
        """One tick for every running sandbox this worker owns, all in one transaction."""
        now = self.clock.now_us()
        ticked = lost = skipped = 0
        with self.store.transaction() as tx:
            for sbx in self.store.running_sandboxes(self.worker_id):
                plan = plan_tick(sbx, now, self.worker_id)
                if plan is None:
                    continue
                if not tx.advance_cursor(sbx.sandbox_id, self.worker_id, sbx.last_tick_us, plan.end_us):
                    lost += 1
                    continue
                tx.spool_put([_spool_item(plan, self.cell_id)])
                ticked += 1
                skipped += plan.skipped_us
                if plan.skipped_us:
                    self.log.warning("tick_gap_capped", extra=self._ids(sbx) | {"skipped_us": plan.skipped_us})
        return TickRun(ticked, lost, skipped)

    def _ids(self, sbx: Sandbox) -> dict[str, str]:
        return {"cell_id": self.cell_id, "org_id": sbx.org_id, "sandbox_id": sbx.sandbox_id,
                "worker_id": self.worker_id}

    # --- lifecycle (the control plane calls these; each is one transaction) ---
    def start(
        self, sandbox_id: str, org_id: str, plan: str, memory_mb: int, cpu_count: int, at_us: int,
        worker_id: str | None = None,
    ) -> Sandbox:
        sbx = Sandbox(sandbox_id, org_id, plan, worker_id or self.worker_id, memory_mb, cpu_count, at_us, at_us)
        with self.store.transaction() as tx:
            existing = self.store.sandbox(sandbox_id)
            if existing is not None and existing.status == "running":
                # Restarting it would leave its open interval unticked and its scale event open.
                raise SandboxAlreadyRunning(sandbox_id)
            tx.put_sandbox(sbx)
            tx.open_scale_event(ScaleEvent(scale_event_id(sandbox_id, at_us), sandbox_id, org_id, memory_mb,
                                           cpu_count, at_us))
        self.log.info("sandbox_started", extra=self._ids(sbx) | {"memory_mb": memory_mb})
        return sbx

    def _final_tick(self, tx: Tx, sbx: Sandbox, at_us: int) -> None:
        """End the current interval at ``at_us`` with a tick at the old size (the owner's, whoever calls)."""
        plan = plan_tick(sbx, at_us, sbx.worker_id)
        if plan is not None and tx.advance_cursor(sbx.sandbox_id, sbx.worker_id, sbx.last_tick_us, at_us):
            tx.spool_put([_spool_item(plan, self.cell_id)])

    def _running(self, sandbox_id: str) -> Sandbox:
        sbx = self.store.sandbox(sandbox_id)
        if sbx is None or sbx.status != "running":
            raise SandboxNotRunning(sandbox_id)
        return sbx

    def resize(self, sandbox_id: str, memory_mb: int, cpu_count: int, at_us: int) -> Sandbox:
        with self.store.transaction() as tx:
            sbx = self._running(sandbox_id)
            self._final_tick(tx, sbx, at_us)
            tx.close_scale_events(sandbox_id, at_us)
            tx.open_scale_event(ScaleEvent(scale_event_id(sandbox_id, at_us), sandbox_id, sbx.org_id, memory_mb,
                                           cpu_count, at_us))
            new = replace(sbx, memory_mb=memory_mb, cpu_count=cpu_count, last_tick_us=max(at_us, sbx.last_tick_us))
            tx.put_sandbox(new)
        self.log.info("sandbox_resized", extra=self._ids(new) | {"memory_mb": memory_mb})
        return new

    def stop(self, sandbox_id: str, at_us: int) -> Sandbox:
        with self.store.transaction() as tx:
            sbx = self._running(sandbox_id)
            self._final_tick(tx, sbx, at_us)
            tx.close_scale_events(sandbox_id, at_us)
            new = replace(sbx, status="stopped", last_tick_us=max(at_us, sbx.last_tick_us))
            tx.put_sandbox(new)
        self.log.info("sandbox_stopped", extra=self._ids(new))
        return new

    def move(self, sandbox_id: str, worker_id: str) -> Sandbox:
        """Migration: the new owner continues from the same cursor; the old one stops ticking it."""
        with self.store.transaction() as tx:
            new = replace(self._running(sandbox_id), worker_id=worker_id)
            tx.put_sandbox(new)
        return new
