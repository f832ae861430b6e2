"""The cell kit's composition root: build one cell process (store, clock, edge client, Stripe, the services)
from its settings, and run it (ticker, forwarder, billers, parity, status), each on its own loop. The only
module of the kit that wires adapters to services (tests/architecture/test_layers.py keeps it so)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cellkit.adapters.admin_http import serve
from cellkit.adapters.clock import SystemClock
from cellkit.adapters.halts import halts_for
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.process import holder_dead, lease_holder_id
from cellkit.adapters.stores import open_store
from cellkit.ports import CellStore, Clock, HaltStore, HttpTransport, MeterEvents
from cellkit.services.billers import Allocator, Billers, BillingConfig, Sender, UsageReporter
from cellkit.services.forwarder import Forwarder
from cellkit.services.halts import AdminHandler, Halts, pull_halted
from cellkit.services.parity import ParityChecker
from cellkit.services.status import push_status, status_body
from cellkit.services.ticker import Ticker
from cellkit.settings import CellSettings, SettingsError


@dataclass
class Cell:
    settings: CellSettings
    store: CellStore
    clock: Clock
    log: logging.Logger
    ticker: Ticker
    billers: Billers
    halts: Halts
    edge: EdgeClient | None = None
    forwarder: Forwarder | None = None
    parity: ParityChecker | None = None

    def admin(self) -> AdminHandler:
        """The halt handler a control plane mounts under /admin/halt-org and /admin/resume-org."""
        return AdminHandler(self.halts, self.settings.secret("EVENT_SECRET"), self.clock)

    def status(self, billers_running: bool) -> dict[str, object]:
        s = self.settings
        body = status_body(self.store, s.authority, billers_running, self.clock.now_us() // 1_000_000,
                           s.BUCKET_SECONDS)
        return body | ({"base_url": s.ADMIN_BASE_URL} if s.ADMIN_BASE_URL else {})


def _stripe(settings: CellSettings) -> MeterEvents:
    from cellkit.adapters.stripe_meters import StripeMeterEvents, make_client

    return StripeMeterEvents(make_client(settings.STRIPE_API_KEY or "sk_unset", settings.STRIPE_API_BASE,
                                         settings.STRIPE_MAX_NETWORK_RETRIES))


def build(settings: CellSettings, log: logging.Logger, store: CellStore | None = None, clock: Clock | None = None,
          transport: HttpTransport | None = None, stripe: MeterEvents | None = None,
          sleep: Callable[[float], None] | None = None, parity: bool | None = None,
          halt_store: HaltStore | None = None) -> Cell:
    """``parity``: None = as CONTRACT 6 says (on when OPENSANDBOX_USAGE_PARITY_URL is set); True = whenever an
    edge is known (``parity-check`` asked for it; EDGE_URL alone suffices)."""
    for flag, value in settings.inexact_flags():
        log.warning("flag_not_exact", extra={"cell_id": settings.CELL_ID, "flag": flag, "value": value,
                                             "meaning": f"{flag}={value!r} is not exactly 'cell' or 'edge': "
                                                        "the safe side (the cell's billers run)"})
    store = store or open_store(settings.CELL_DATABASE_URL)
    clock = clock or SystemClock()
    halt_store = halt_store or halts_for(store)
    ticker = Ticker(store, settings.CELL_ID, settings.WORKER_ID, clock, log, halted=halt_store.org_halted_locked)
    cfg = BillingConfig(settings.CELL_ID, settings.BUCKET_SECONDS, settings.SETTLE_SECONDS)
    billers = Billers(settings.authority, [
        UsageReporter(store, clock, cfg, log), Allocator(store, clock, cfg, log),
        Sender(store, clock, cfg, log, stripe or _stripe(settings)),
    ], log, settings.CELL_ID)
    cell = Cell(settings, store, clock, log, ticker, billers, Halts(halt_store, ticker, clock, log))
    if settings.edge_base:
        cell.edge = EdgeClient(settings.edge_base, settings.secret("EVENT_SECRET"), settings.CELL_ID,
                               transport or UrllibTransport(), clock, timeout=settings.EDGE_TIMEOUT_SECONDS)
        cell.forwarder = Forwarder(store, cell.edge, clock, sleep or _sleeper(threading.Event()), log,
                                   random.Random(), settings.FORWARD_BATCH,
                                   holder=lease_holder_id(settings.WORKER_ID), holder_dead=holder_dead)
        if parity or (parity is None and settings.OPENSANDBOX_USAGE_PARITY_URL):
            # OPENSANDBOX_USAGE_PARITY_URL, when set, names where parity is read and reported (an override).
            parity_base = settings.parity_base or settings.edge_base
            parity_edge = cell.edge if parity_base == settings.edge_base else EdgeClient(
                parity_base, cell.edge.secret, settings.CELL_ID, cell.edge.transport, clock,
                timeout=settings.EDGE_TIMEOUT_SECONDS)
            cell.parity = ParityChecker(store, parity_edge, clock, log, settings.PARITY_TOLERANCE,
                                        settings.GRACE_SECONDS, settings.BUCKET_SECONDS)
    return cell


def _sleeper(stop: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


def _loop(stop: threading.Event, every: float, step: Callable[[], object], log: logging.Logger, name: str) -> None:
    while not stop.is_set():
        try:
            step()
        except Exception:  # a loop must survive one bad step; the next retries
            log.exception("loop_step_failed", extra={"loop": name})
        stop.wait(every)


def run(cell: Cell, stop: threading.Event) -> None:
    """Until ``stop`` is set: tick, forward, bill (cell authority), check parity, report status."""
    s = cell.settings
    edge = cell.edge
    if edge is None:
        raise SettingsError("EDGE_URL (or OPENSANDBOX_USAGE_PARITY_URL) must be set to run a cell")
    cell.billers.start()
    cell.billers.bind_stop(stop, _sleeper(stop))
    if cell.forwarder is not None:
        cell.forwarder.stop, cell.forwarder.sleep = stop, _sleeper(stop)
    loops: list[tuple[str, float, Callable[[], object]]] = [
        ("ticker", s.TICK_SECONDS, cell.ticker.tick),
        ("billers", s.BILLERS_SECONDS, cell.billers.run_once),
        ("status", s.STATUS_SECONDS, lambda: push_status(edge, cell.status(cell.billers.running))),
        ("halts", s.HALT_RECONCILE_SECONDS, lambda: cell.halts.reconcile(pull_halted(edge))),
    ]
    if s.ADMIN_PORT is not None:
        serve(cell.admin().handle, "0.0.0.0", s.ADMIN_PORT)
    if cell.forwarder is not None:
        fwd = cell.forwarder
        loops.append(("forwarder", s.FORWARD_IDLE_SECONDS, lambda: fwd.drain(max_posts=fwd.stats.posts + 1000)))
    if cell.parity is not None:
        cell.parity.sleep = _sleeper(stop)
        loops.append(("parity", s.PARITY_SECONDS, cell.parity.scheduled_check))
    threads = [threading.Thread(target=_loop, args=(stop, every, step, cell.log, name), name=name, daemon=True)
               for name, every, step in loops]
    for t in threads:
        t.start()
    cell.log.info("cell_running", extra={"cell_id": s.CELL_ID, "worker_id": s.WORKER_ID, "authority": s.authority,
                                         "loops": [n for n, _, _ in loops]})
    while not stop.wait(0.5):  # short waits: the signal handler that sets it runs on this (the main) thread
        pass
    _join(threads, time.monotonic() + s.SHUTDOWN_SECONDS, cell.log, s.CELL_ID)
    if cell.forwarder is not None and not any(t.name == "forwarder" and t.is_alive() for t in threads):
        cell.forwarder.release()  # a clean stop: another process may take the spool over at once


def _join(threads: list[threading.Thread], deadline: float, log: logging.Logger, cell_id: str) -> None:
    """Wait for the loops, but not past ``deadline``: a request to a hanging edge (or Stripe) may still be in
    flight. Leaving it is safe: the spool and the outbox are durable and every send is idempotent (envelope
    ids, Stripe identifiers), so whatever it was doing is redone, counted once, by the next start."""
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threads if t.is_alive()]
    if left:
        log.warning("shutdown_left_loops", extra={"cell_id": cell_id, "loops": left})
    log.info("cell_stopped", extra={"cell_id": cell_id})
