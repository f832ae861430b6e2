"""The ticker and the sandbox lifecycle: ticks and scale events, written to the spool atomically.

Every tick is spooled in the same transaction that advances the sandbox's
cursor, by a compare-and-set on the whole row as the tick read it (only the
owning worker of a running sandbox ticks). So a crash loses no tick and
produces none twice, and two workers that both believe they own a sandbox can
never both tick the same interval: the loser's compare-and-set fails and its
envelope is not written. Every lifecycle call (start, resize, stop, move) reads
the row locked and writes it by compare-and-set too, at one time for its last
tick, its scale events and its cursor: ``max(requested, cursor)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from cellkit.core.ticker import Sandbox, TickPlan, advanced, plan_tick, tick_envelope
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


class OrgHalted(PermissionError):
    """The org is halted (its free credits ran out): no create, no wake, until the edge resumes it."""


class SandboxConflict(RuntimeError):
    """A compare-and-set found the row changed (two starts of one new sandbox): the transaction rolls back."""


CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True)
class Change:
    """A lifecycle call's outcome: the sandbox after it and the moment it took effect.

    ``at_us`` is the requested time, or the sandbox's cursor when that is later (a tick already covered the
    requested moment): ticks, scale events and anyone keeping a ledger of the change use ``at_us``.
    """

    sandbox: Sandbox
    at_us: int
    requested_us: int

    @property
    def clamped_us(self) -> int:
        return self.at_us - self.requested_us


def _event(sbx: Sandbox, at_us: int) -> ScaleEvent:
    return ScaleEvent(scale_event_id(sbx.sandbox_id, at_us), sbx.sandbox_id, sbx.org_id, sbx.memory_mb,
                      sbx.cpu_count, at_us)


class Ticker:
    def __init__(self, store: CellStore, cell_id: str, worker_id: str, clock: Clock, log: logging.Logger,
                 halted: Callable[[str], bool] | None = None) -> None:
        self.store, self.cell_id, self.worker_id, self.clock, self.log = store, cell_id, worker_id, clock, log
        self.clamped = 0  # lifecycle calls whose time was moved up to the cursor (each also logged)
        # Inside a start's transaction: is the org halted? (HaltStore.org_halted_locked: it also takes the
        # org's lock, so a halt and a create of one org never interleave.)
        self.halted = halted

    def tick(self) -> TickRun:
        """One tick for every running sandbox this worker owns, all in one transaction."""
        ticked = lost = skipped = 0
        with self.store.transaction() as tx:
            now = self.clock.now_us()
            for sbx in self.store.running_sandboxes(self.worker_id):
                plan = plan_tick(sbx, now, self.worker_id)
                if plan is None:
                    continue
                # The whole row as read, not only the cursor: a resize committed since (same cursor, new size)
                # must fail this tick too, or its interval would go out at the old size.
                if not tx.change_sandbox(sbx, advanced(plan)):
                    lost += 1
                    continue
                tx.spool_put([_spool_item(plan, self.cell_id)])
                ticked += 1
                skipped += plan.skipped_us
                self._log_gap(plan)
        return TickRun(ticked, lost, skipped)

    def _log_gap(self, plan: TickPlan) -> None:
        if plan.skipped_us:
            self.log.warning("tick_gap_capped", extra=self._ids(plan.sandbox) | {"skipped_us": plan.skipped_us})

    def _ids(self, sbx: Sandbox) -> dict[str, str]:
        return {"cell_id": self.cell_id, "org_id": sbx.org_id, "sandbox_id": sbx.sandbox_id,
                "worker_id": self.worker_id}

    # --- lifecycle (the control plane calls these; each is one transaction) ---
    # ``at_us=None`` reads the clock inside the transaction, once the row (PostgreSQL) or the database (SQLite)
    # is locked: no tick can slip in between the reading and the change.
    def start(
        self, sandbox_id: str, org_id: str, plan: str, memory_mb: int, cpu_count: int, at_us: int | None = None,
        worker_id: str | None = None,
    ) -> Change:
        def apply(tx: Tx) -> Change:
            if self.halted is not None and self.halted(org_id):
                raise OrgHalted(org_id)
            existing = tx.sandbox_for_update(sandbox_id)
            if existing is not None and existing.status == "running":
                # Restarting it would leave its open interval unticked and its scale event open.
                raise SandboxAlreadyRunning(sandbox_id)
            # A stopped sandbox restarts no earlier than its last interval ended: its scale events never overlap.
            at, asked = self._at(at_us, None if existing is None else existing.last_tick_us)
            sbx = Sandbox(sandbox_id, org_id, plan, worker_id or self.worker_id, memory_mb, cpu_count, at, at)
            written = tx.insert_sandbox(sbx) if existing is None else tx.change_sandbox(existing, sbx)
            if not (written and tx.open_scale_event(_event(sbx, at))):
                raise SandboxConflict(sandbox_id)
            return Change(sbx, at, asked)

        return self._commit("started", apply)

    def resize(self, sandbox_id: str, memory_mb: int, cpu_count: int, at_us: int | None = None) -> Change:
        return self.change(sandbox_id, "resized", at_us, lambda s: replace(s, memory_mb=memory_mb,
                                                                          cpu_count=cpu_count))

    def stop(self, sandbox_id: str, at_us: int | None = None) -> Change:
        return self.change(sandbox_id, "stopped", at_us, lambda s: replace(s, status="stopped"))

    def move(self, sandbox_id: str, worker_id: str, at_us: int | None = None) -> Change:
        """Migration: the old owner's interval ends now; the new owner ticks from there, the old one no more."""
        return self.change(sandbox_id, "moved", at_us, lambda s: replace(s, worker_id=worker_id))

    def change(self, sandbox_id: str, reason: str, at_us: int | None, make: Callable[[Sandbox], Sandbox]) -> Change:
        """One state change of a running sandbox at ``max(at_us, cursor)``, as one transaction.

        The row is read locked and written by compare-and-set; the interval since the cursor ends with a last
        tick as the row was (its size, its owner); the scale events close (and, still running at a new size,
        reopen) at the same moment. ``reason`` names it in the log: ``sandbox_{reason}``.
        """

        def apply(tx: Tx) -> Change:
            sbx = tx.sandbox_for_update(sandbox_id)
            if sbx is None or sbx.status != "running":
                raise SandboxNotRunning(sandbox_id)
            at, asked = self._at(at_us, sbx.last_tick_us)
            new = replace(make(sbx), last_tick_us=at)
            if not tx.change_sandbox(sbx, new):
                raise SandboxConflict(sandbox_id)
            last = self._last_tick(sbx, at)
            if last is not None:
                tx.spool_put([_spool_item(last, self.cell_id)])
                self._log_gap(last)
            if new.status != "running" or (new.memory_mb, new.cpu_count) != (sbx.memory_mb, sbx.cpu_count):
                tx.close_scale_events(sandbox_id, at)
                if new.status == "running" and not tx.open_scale_event(_event(new, at)):
                    raise SandboxConflict(sandbox_id)
            return Change(new, at, asked)

        return self._commit(reason, apply)

    def _last_tick(self, sbx: Sandbox, at_us: int) -> TickPlan | None:
        """The interval a change ends: up to ``at_us``, at the row's size, as its owner (whoever calls)."""
        return plan_tick(sbx, at_us, sbx.worker_id)

    def _at(self, at_us: int | None, cursor: int | None) -> tuple[int, int]:
        """(effective, requested): one rule for every lifecycle time, never before the cursor."""
        asked = self.clock.now_us() if at_us is None else at_us
        return (asked if cursor is None else max(asked, cursor)), asked

    def _commit(self, reason: str, apply: Callable[[Tx], Change]) -> Change:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with self.store.transaction() as tx:
                    change = apply(tx)
                break
            except SandboxConflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
        ids = self._ids(change.sandbox) | {"reason": reason, "at_us": change.at_us}
        if change.clamped_us:
            self.clamped += 1
            self.log.warning("lifecycle_time_clamped", extra=ids | {"requested_us": change.requested_us,
                                                                    "clamped_us": change.clamped_us})
        self.log.info(f"sandbox_{reason}", extra=ids | {"memory_mb": change.sandbox.memory_mb,
                                                         "owner": change.sandbox.worker_id})
        return change
