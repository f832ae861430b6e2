"""The fleet loop of the cutover run: timed actions, every cell stepped, the rollup schedule, the ledger.

One thread runs it while the operator (the main thread) calls the cutover CLI.
Each iteration takes one wall-clock reading `now_us`, runs the actions due by
then (so a tick pinned to a boundary always comes after the previous step's
ticks), steps every cell at `now_us`, and calls `POST /run` for each bucket
once it is `GRACE_SECONDS` past its end (what EventBridge does on AWS).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim.api import EdgeClient
from sim.cells import CutoverCell
from sim.truth import PlanChange, Segment

US = 1_000_000


@dataclass(order=True)
class Action:
    at_us: int
    name: str = field(compare=False)
    run: Callable[[int], None] = field(compare=False)


@dataclass
class Ledger:
    """What the simulation did to its sandboxes and orgs: the ground truth's only input."""

    open: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # sandbox -> (org, mb, since_us)
    segments: list[Segment] = field(default_factory=list)
    changes: list[PlanChange] = field(default_factory=list)

    def opened(self, sandbox_id: str, org_id: str, memory_mb: int, at_us: int) -> None:
        self.open[sandbox_id] = (org_id, memory_mb, at_us)

    def closed(self, sandbox_id: str, at_us: int) -> None:
        org_id, memory_mb, since = self.open.pop(sandbox_id)
        self.segments.append(Segment(sandbox_id, org_id, memory_mb, since, at_us))

    def until(self, end_us: int) -> int:
        """The truth's horizon: ``end_us``, or later if a segment ran past it (a stop applied late)."""
        return max([end_us, *(s.end_us for s in self.segments)])


@dataclass
class SeamLoop:
    cells: dict[str, CutoverCell]
    edge: EdgeClient
    bucket: int
    grace: int
    log: logging.Logger
    ledger: Ledger = field(default_factory=Ledger)
    actions: list[Action] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    rolled_through: int = 0  # buckets ending at or before it have had their POST /run
    last_run_us: int = 0
    workers_busy: bool = False  # the last run left buckets (or late slots) with the rollup's workers
    late_open: bool = False  # the last run saw a late slot still filling (its stragglers billed once it closes)
    runs: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    every_step: list[Callable[[int], None]] = field(default_factory=list)  # after the cells' step (sim/cutover_free)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        # Held by the schedule around each POST /run and by the operator around `cutover arm`. On AWS a
        # deploy never kills a running rollup; locally `arm` restarts `chalice local`, and a run killed
        # mid-way holds the rollup lease for LEASE_SECONDS (360 s), longer than the rest of the run.
        self.deploying = threading.Lock()
        self.stop = threading.Event()
        self.switch_requested = threading.Event()
        self.switched = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        # The schedule (EventBridge on AWS) runs apart from the cells: a slow rollup never delays a tick or the switch.
        self.schedule = threading.Thread(target=self._schedule, name="schedule", daemon=True)

    def at(self, at_us: int, name: str, run: Callable[[int], None]) -> None:
        with self.lock:
            self.actions.append(Action(at_us, name, run))
            self.actions.sort()

    def start(self, now_s: int) -> None:
        self.rolled_through = now_s - now_s % self.bucket
        self.thread.start()
        self.schedule.start()

    def _schedule(self) -> None:
        while not self.stop.is_set():
            self.rollup_due(time.time_ns() // 1000)
            self.stop.wait(0.25)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        self.schedule.join(timeout)

    def _due(self, now_us: int) -> list[Action]:
        with self.lock:
            due = [a for a in self.actions if a.at_us <= now_us]
            self.actions = [a for a in self.actions if a.at_us > now_us]
        return due

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self.iteration(time.time_ns() // 1000)
                self.stop.wait(0.25)
        except BaseException as exc:  # the operator thread reports it and fails the run
            self.error = exc
            self.log.exception("fleet_failed")

    def iteration(self, now_us: int) -> None:
        for action in self._due(now_us):
            action.run(now_us)
            self.done.append(action.name)
            self.log.info("fleet_action", extra={"action": action.name, "at_us": action.at_us})
        if self.switch_requested.is_set() and not self.switched.is_set():
            for cell in self.cells.values():
                cell.restart("edge")
            self.switched.set()
        for cell in self.cells.values():
            cell.step(now_us)
        for hook in self.every_step:
            hook(now_us)

    def rollup_due(self, now_us: int) -> None:
        """POST /run once per closed bucket (the schedule); a failure (the app restarting) retries next step.

        A run hands a closed bucket to the rollup's workers (the fan-out) and sends what is rolled: while a
        run's answer names buckets still with the workers, the next run comes a second later, not a bucket
        later, so a bucket's rows are sent as soon as the workers rolled it (on AWS the 5-minute schedule)."""
        end = self.rolled_through + self.bucket
        again = self.workers_busy and now_us >= self.last_run_us + US
        if now_us < (end + self.grace) * US + US // 2 and not again:
            return
        try:
            with self.deploying:
                answer = self.edge.post("/run", {})
        except OSError as exc:
            self.log.warning("rollup_call_failed", extra={"error": str(exc)})
            return
        if answer.status != 200:
            self.log.warning("rollup_refused", extra={"status": answer.status, "body": str(answer.body)[:300]})
            return
        self.runs.append(answer.body)
        self.last_run_us = now_us
        roll = answer.body.get("roll") or {}
        late = roll.get("late") or {}
        self.workers_busy = bool(roll.get("waiting") or late.get("waiting"))
        self.late_open = bool(late.get("open"))
        self.rolled_through = max(self.rolled_through, (now_us // US - self.grace) // self.bucket * self.bucket)

    def rollup_idle(self, through: int, timeout_s: float = 60.0) -> bool:
        """Wait until a run past `through` (a bucket end + grace) found nothing left with the workers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not (self.workers_busy or self.late_open) and self.last_run_us >= (through + self.grace) * US:
                return True
            time.sleep(0.25)
        return False

    # --- sandbox operations (run on the fleet thread, as actions) -----------------------------------------
    def create(self, cell_id: str, sandbox_id: str, org_id: str, memory_mb: int, now_us: int,
               with_token: bool = True) -> int:
        cell = self.cells[cell_id]
        token = cell.cap_token(org_id) if with_token and cell.authority == "edge" else None
        if token is not None:
            now_us = max(now_us, time.time_ns() // 1000)  # the token's iat is the edge's "now", not before it
        answer = cell.create(sandbox_id, org_id, memory_mb, now_us, token)
        if answer.status == 201:
            self.ledger.opened(sandbox_id, org_id, memory_mb, now_us)
        else:
            self.refused.append({"cell_id": cell_id, "sandbox_id": sandbox_id, "org_id": org_id,
                                 "status": answer.status, "error": answer.body.get("error")})
        return answer.status

    # The ledger takes the moment the change took effect (`Change.at_us`): a step that runs late (the fleet
    # thread busy with a webhook) asks for a time the sandbox's ticks already passed, and the kit clamps it.
    def resize(self, cell_id: str, sandbox_id: str, memory_mb: int, now_us: int) -> None:
        change = self.cells[cell_id].cell.ticker.resize(sandbox_id, memory_mb, max(1, memory_mb // 2048), now_us)
        org_id = self.ledger.open[sandbox_id][0]
        self.ledger.closed(sandbox_id, change.at_us)
        self.ledger.opened(sandbox_id, org_id, memory_mb, change.at_us)

    def stop_sandbox(self, cell_id: str, sandbox_id: str, at_us: int) -> None:
        change = self.cells[cell_id].cell.ticker.stop(sandbox_id, at_us)
        self.ledger.closed(sandbox_id, change.at_us)

    def stop_all(self, at_us: int) -> None:
        for cell_id, cell in self.cells.items():
            for sbx in cell.store.running_sandboxes():
                self.stop_sandbox(cell_id, sbx.sandbox_id, at_us)

    def flush(self, cell_id: str, tries: int = 40) -> None:
        """Deliver the cell's whole spool now (retrying while the edge restarts)."""
        cell = self.cells[cell_id]
        for _ in range(tries):
            cell.forward(max_posts=50)
            if not cell.spool_depth():
                return
            time.sleep(0.25)
        raise RuntimeError(f"{cell_id}: spool not delivered ({cell.spool_depth()} envelopes left)")
