"""Simulated cells for the cutover run, built on the cell kit: each its own SQLite database.

A `CutoverCell` is the kit's own wiring (`cellkit.bootstrap.build`: ticker,
forwarder, billers, parity checker) plus its sandbox gate, stepped by the
fleet loop instead of the kit's threads so that one loop decides the order of
things (a tick exactly on a bucket boundary, then a drained spool, then a
plan change). Its clock is injected: wall time normally, a bucket boundary
when the scenario needs a tick there. "Restarting" a cell with
PRO_BILLING_AUTHORITY=edge rebuilds it on the same database, as a real
control plane restart would.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import UrllibTransport
from cellkit.adapters.sqlite import SqliteStore
from cellkit.bootstrap import Cell, build
from cellkit.core.parity import ParityCheck, last_settled_window
from cellkit.core.usage import OrgRow
from cellkit.ports import HttpResponse, TransportError
from cellkit.services.parity import ParityError, ParityNotSettled
from cellkit.services.plans import Answer, CreateRequest, EdgePolicy, SandboxGate
from cellkit.services.status import StatusError, push_status, status_body
from cellkit.settings import CellSettings

US = 1_000_000
INGEST_PATH = "/ingest"
POLICY_PATH = "/internal/org-policy"


class CuttableTransport:
    """The cell's network. `cut` takes down only the forwarder's link (POST /ingest): the spool fills while
    status and parity still reach the edge, as when one path of a cell's egress fails."""

    def __init__(self) -> None:
        self.inner = UrllibTransport()
        self.cut = False

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        if self.cut and url.endswith(INGEST_PATH):
            raise TransportError("simulated cut-off of the forwarder's link")
        return self.inner.request(method, url, body, headers, timeout)


@dataclass(frozen=True)
class CellConfig:
    cell_id: str
    db_path: Path
    edge_url: str
    event_secret: str
    jwt_secret: str
    stripe_key: str
    stripe_url: str
    bucket_seconds: int
    grace_seconds: int
    settle_seconds: int

    def settings(self, authority: str) -> CellSettings:
        return CellSettings(
            CELL_ID=self.cell_id, WORKER_ID=f"{self.cell_id}-w1", CELL_DATABASE_URL=f"sqlite://{self.db_path}",
            EDGE_URL=self.edge_url, OPENSANDBOX_USAGE_PARITY_URL=self.edge_url + "/internal/usage-parity",
            EVENT_SECRET=self.event_secret, SESSION_JWT_SECRET=self.jwt_secret, STRIPE_API_KEY=self.stripe_key,
            STRIPE_API_BASE=self.stripe_url, PRO_BILLING_AUTHORITY=authority,
            BUCKET_SECONDS=self.bucket_seconds, GRACE_SECONDS=self.grace_seconds,
            SETTLE_SECONDS=self.settle_seconds,
        )


@dataclass
class CutoverCell:
    config: CellConfig
    log: logging.Logger
    clock: ManualClock = field(default_factory=lambda: ManualClock(time.time_ns() // 1000))
    transport: CuttableTransport = field(default_factory=CuttableTransport)
    reports: list[ParityCheck] = field(default_factory=list)
    authority: str = "cell"
    parity_through: int = 0
    parity_wait_us: int = 0  # the edge's Retry-After: no parity question before then
    parity_answers: dict[str, int] = field(default_factory=lambda: {"answered": 0, "not_settled": 0})
    status_at: float = 0.0
    cut_windows: list[tuple[int, int]] = field(default_factory=list)
    tick_every_us: int = US  # the kit's TICK_SECONDS (20 s against 1 h buckets), scaled to 10 s buckets
    ticked_at: int = 0

    def __post_init__(self) -> None:
        self.config.db_path.unlink(missing_ok=True)
        # A simulated cell is never power-cut: synchronous=NORMAL spares an fsync per commit on a busy machine.
        self.store = SqliteStore(str(self.config.db_path), durable=False)
        self.cell = self._build()

    def _build(self) -> Cell:
        cell = build(self.config.settings(self.authority), self.log, store=self.store, clock=self.clock,
                     transport=self.transport, sleep=lambda _: None)
        cell.billers.start()  # logs biller_started, or (authority=edge) biller_stopped twice and biller_draining
        if cell.parity is not None:
            cell.parity.wait_budget_s = 0  # a window the edge has not settled is asked again next step
        return cell

    @property
    def cell_id(self) -> str:
        return self.config.cell_id

    def restart(self, authority: str) -> None:
        """PRO_BILLING_AUTHORITY=<authority> and a restart: billers stop (edge) and creates need cap-tokens."""
        self.authority = authority
        if self.cell.forwarder is not None:
            # A clean stop, as the kit's runtime does: the restarted forwarder takes the spool's lease at once
            # instead of standing by until the old one's expires (30 s, longer than the seam's flush waits).
            self.cell.forwarder.release()
        self.cell = self._build()
        self.push_status(force=True)

    def put_org(self, org: OrgRow) -> None:
        self.store.put_org(org)

    # --- the loop ---------------------------------------------------------------------------------
    def step(self, now_us: int) -> None:
        self.clock.set(now_us)
        if now_us - self.ticked_at >= self.tick_every_us:
            self.cell.ticker.tick()
            self.ticked_at = now_us
        self.forward()
        self.cell.billers.run_once()
        self.parity_due()
        self.push_status()

    def tick_at(self, at_us: int) -> None:
        """A tick for every running sandbox ending exactly at `at_us` (a bucket boundary)."""
        self.clock.set(at_us)
        self.cell.ticker.tick()

    def forward(self, max_posts: int = 20) -> int:
        fwd = self.cell.forwarder
        if fwd is None:
            return 0
        delivered = 0
        for _ in range(max_posts):
            if not self.store.spool_depth():
                break
            got = fwd.pump()
            if not got:
                break  # the edge is unreachable or restarting: the spool keeps it for the next step
            delivered += got
        return delivered

    def spool_depth(self) -> int:
        return self.store.spool_depth()

    def parity_due(self) -> None:
        """Every settled window since the last one reported, in order (the kit's checker looks only at the last
        one: a window missed while the edge restarted would otherwise never be reported)."""
        checker = self.cell.parity
        if checker is None or self.clock.now_us() < self.parity_wait_us:
            return
        width = self.config.bucket_seconds
        _, latest = last_settled_window(self.clock.now_us() // US, self.config.grace_seconds, width)
        start = self.parity_through or latest - width
        for window_end in range(start + width, latest + 1, width):
            try:
                self.reports.append(checker.check((window_end - width, window_end)))
                self.parity_answers["answered"] += 1
            except ParityNotSettled as exc:  # the edge asks us to wait: as the kit does, come back then
                self.parity_answers["not_settled"] += 1
                self.parity_wait_us = self.clock.now_us() + exc.retry_after * US
                return
            except ParityError as exc:
                self.log.warning("parity_check_failed", extra={"cell_id": self.cell_id, "error": str(exc)})
                return
            self.parity_through = window_end
            if self.transport.cut:
                self.cut_windows.append((window_end - width, window_end))

    def parity_until(self, window_end: int, timeout_s: float = 30.0) -> None:
        """Parity-check every window through `window_end` now, asking again while the edge answers 503."""
        deadline = time.monotonic() + timeout_s
        while self.cell.parity is not None and self.parity_through < window_end and time.monotonic() < deadline:
            self.parity_wait_us = 0
            self.parity_due()
            if self.parity_through < window_end:
                time.sleep(0.5)

    def recheck(self, windows: list[tuple[int, int]]) -> list[ParityCheck]:
        """After a late backlog: parity of the windows reported while cut off, posted again (replacing)."""
        checker = self.cell.parity
        done = [self._check_patiently(w) for w in windows] if checker else []
        self.reports.extend(done)
        return done

    def _check_patiently(self, window: tuple[int, int], tries: int = 10) -> ParityCheck:
        # The edge may answer 503 (a window's late slot settling) or time out on a loaded machine: ask again.
        attempt = 1
        while True:
            try:
                return self.cell.parity.check(window)  # type: ignore[union-attr]
            except ParityError as exc:
                if attempt >= tries:
                    raise
                attempt += 1
                self.log.warning("parity_recheck_retry", extra={"cell_id": self.cell_id, "error": str(exc)})
                time.sleep(1.0)

    def status(self) -> dict[str, object]:
        return status_body(self.store, self.authority, self.cell.billers.running, self.clock.now_us() // US,
                           self.config.bucket_seconds)

    def push_status(self, force: bool = False) -> None:
        edge = self.cell.edge
        if edge is None or (not force and time.monotonic() - self.status_at < 1.0):
            return
        try:
            push_status(edge, self.status())
            self.status_at = time.monotonic()
        except StatusError as exc:
            self.log.warning("status_push_failed", extra={"cell_id": self.cell_id, "error": str(exc)})

    # --- sandbox creates through the kit's gate ------------------------------------------------------
    def cap_token(self, org_id: str) -> str | None:
        """What a caller does in edge mode: ask the edge's org-policy for a token minted for this cell."""
        edge = self.cell.edge
        if edge is None:
            return None
        resp = edge.get(POLICY_PATH, [("org_id", org_id), ("cell_id", self.cell_id)])
        if resp.status != 200:
            return None
        token = json.loads(resp.body).get("capToken")
        return str(token) if token else None

    def create(self, sandbox_id: str, org_id: str, memory_mb: int, at_us: int, cap_token: str | None) -> Answer:
        self.clock.set(at_us)
        edge = self.cell.edge
        gate = SandboxGate(self.authority, self.cell_id, self.config.jwt_secret,
                           EdgePolicy(edge) if edge else None, self.store, self.cell.ticker, self.clock, self.log)
        return gate.create(CreateRequest(sandbox_id, org_id, memory_mb, max(1, memory_mb // 2048), cap_token))

    def close(self) -> None:
        self.store.close()
