"""The cutover's imperative shell: gather the facts (store, cell reports, Stripe), let `core/cutover` decide,
and for rollback carry out what it decided (cancel meter events, demote rows), each step logged.

The CLI (`cli_cutover.py`) only parses arguments and prints what these return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.core.catalog import price_specs
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.cutover import drain as drain_phase
from chalicelib.core.cutover import plan as plan_phase
from chalicelib.core.cutover import preflight as preflight_phase
from chalicelib.core.cutover import rollback as rollback_phase
from chalicelib.core.cutover import verify as verify_phase
from chalicelib.core.cutover.checks import EXIT_OK, Check, StageFlags, exit_code
from chalicelib.core.outbox import OutboxRow
from chalicelib.observability import logger
from chalicelib.ports import AggregateStore, CatalogStore, CellStore, OutboxStore, SeamReader
from chalicelib.settings import Settings, SettingsError, load_settings
from chalicelib.stripe_ports import CutoverStripe


class CutoverRecords(AggregateStore, OutboxStore, Protocol):
    """The billing store's roles the cutover reads and writes: settled aggregates (plan), the outbox (verify,
    rollback's cancellations and demotions)."""


class CutoverDeps(Protocol):
    """What the cutover's operations ask of the container (bootstrap.py's, or a test's on memory)."""

    settings: Settings

    @property
    def store(self) -> CutoverRecords: ...

    def now(self) -> int: ...

    def accounts(self) -> CatalogStore: ...

    def cells(self) -> CellStore: ...


@dataclass
class CutoverOutcome:
    """What one cutover command found: its checks (which make its exit code) and what it shows."""

    command: str
    checks: list[Check]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return exit_code(self.checks)

    def body(self) -> dict[str, Any]:
        return {"command": self.command, "ok": self.code == EXIT_OK, "exit_code": self.code,
                "checks": [c.body() for c in self.checks], **self.data}


def flag_values(flags: StageFlags) -> preflight_phase.FlagValues | str:
    """The stage's flags parsed as the app parses them, or why the app would not start with them."""
    try:
        settings = load_settings({k: str(v) for k, v in flags.env.items()})
    except SettingsError as exc:
        return str(exc)
    return preflight_phase.FlagValues(settings.SHADOW, settings.BILL_FROM)


def preflight(svc: CutoverDeps, stripe: CutoverStripe, flags: StageFlags, running_shadow: bool | None,
              soak_seconds: int = preflight_phase.SOAK_SECONDS) -> CutoverOutcome:
    settings = svc.settings
    now = svc.now()
    published = [e.key for e in svc.accounts().catalog()]
    checks = [preflight_phase.check_catalog(published, [s.catalog_key for s in price_specs()]),
              preflight_phase.check_webhook(stripe.webhook_endpoints())]
    cells = svc.cells().cell_statuses()
    start, end = preflight_phase.soak_window(now, settings.BUCKET_SECONDS, settings.GRACE_SECONDS, soak_seconds)
    reports = {c.cell_id: svc.cells().parity_reports(c.cell_id, start - 7 * 86400, end) for c in cells}
    checks += preflight_phase.check_parity([c.cell_id for c in cells], reports, start, end)
    checks += preflight_phase.check_flags(flags, flag_values(flags), cells, running_shadow)
    return CutoverOutcome("preflight", checks, {"stage": flags.stage, "soak": {"from": start, "to": end}})


def plan(svc: CutoverDeps, flags: StageFlags, others: Sequence[StageFlags], lead: int | None) -> CutoverOutcome:
    bucket = svc.settings.BUCKET_SECONDS
    now = svc.now()
    lead = bucket if lead is None else lead
    horizon = min(86400, 48 * bucket)
    first = -(-(now + lead) // bucket) * bucket
    # Yesterday's usage around each candidate boundary, from the settled aggregates (no sample reads).
    usage: dict[int, Decimal] = {}
    for b in range(first - 86400 - bucket, first - 86400 + horizon, bucket):
        if b + bucket + svc.settings.GRACE_SECONDS <= now:
            usage[b] = sum((a.gb_seconds for a in svc.store.aggregates(b)), Decimal(0))
    t = plan_phase.propose_t(now, bucket, lead, usage, horizon)
    body = {"stage": flags.stage, "T": t, **plan_phase.plan_flags(flags, t, others)}
    return CutoverOutcome("plan", [Check("plan", True, f"T={t}")], body)


def drain(svc: CutoverDeps, t: int, stale_after: int) -> CutoverOutcome:
    cells = svc.cells().cell_statuses()
    checks = drain_phase.drain_checks(cells, t, svc.now(), stale_after)
    return CutoverOutcome("drain-check", checks, {"T": t, "cells": [cell_body(c) for c in cells]})


def cell_body(c: CellStatus) -> dict[str, Any]:
    return {"cell_id": c.cell_id, "authority": c.authority, "billers_running": c.billers_running,
            "billed_through": c.billed_through, "pending_billable": c.pending_billable,
            "spool_depth": c.spool_depth, "reported_at": c.reported_at}


def seam_buckets(cells: Sequence[CellStatus], t: int, bucket: int, around: int = 2) -> list[int]:
    edges = [c.billed_through for c in cells] + [t]
    lo, hi = min(edges) - around * bucket, max(edges) + around * bucket
    return list(range(lo - lo % bucket, hi, bucket))


def verify(svc: CutoverDeps, seam_reader: SeamReader, flags: StageFlags, t: int, stale_after: int,
           run_every: int = verify_phase.RUN_EVERY_SECONDS) -> CutoverOutcome:
    settings = svc.settings
    now = svc.now()
    bucket = settings.BUCKET_SECONDS
    cells = svc.cells().cell_statuses()
    last_closed = (now - settings.GRACE_SECONDS) // bucket * bucket - bucket
    around = [b for b in seam_buckets(cells, t, bucket) if b <= last_closed]
    recent = [b for b in range(last_closed - 2 * bucket, last_closed + bucket, bucket) if b >= t]
    rows = {r.id: r for r in seam_reader.bucket_rows(sorted(set(around + recent)))}
    rows |= {r.id: r for r in svc.store.outbox_queue("pending", min_bucket=t)}
    sent = [r for r in rows.values() if r.state in ("sent", "cancelled")]
    verdicts = verify_phase.seam(cells, t, bucket, sent, last_closed=last_closed)
    checks = [verify_phase.check_armed(flags, t), verify_phase.check_flowing(list(rows.values()), t, bucket,
                                                             settings.GRACE_SECONDS, now, run_every)]
    checks += [c for c in (drain_phase.check_fresh(c, now, stale_after) for c in cells) if c]
    checks += verify_phase.check_cells_stood_down(cells, t)
    checks += verify_phase.check_seam(verdicts)
    return CutoverOutcome("verify", checks, {"T": t, "buckets": [v.body() for v in verdicts],
                                      "cells": [cell_body(c) for c in cells]})


def rollback(svc: CutoverDeps, seam_reader: SeamReader, stripe: CutoverStripe, t: int) -> CutoverOutcome:
    """Cancel (within 24 h) or list every meter event the edge sent for a bucket a cell billed."""
    now = svc.now()
    bucket = svc.settings.BUCKET_SECONDS
    cells = svc.cells().cell_statuses()
    rows: list[OutboxRow] = []
    org_cells: dict[tuple[str, int], frozenset[str]] = {}
    if cells:
        lo = min([t] + [c.billed_through for c in cells]) - 2 * bucket
        hi = max(c.billed_through for c in cells)
        buckets = list(range(lo - lo % bucket, hi, bucket))
        rows = seam_reader.bucket_rows(buckets)
        # Only buckets some but not all cells billed need to know where each org's usage came from.
        mixed = {b for b in buckets if min(c.billed_through for c in cells) <= b}
        for b in sorted(mixed):
            orgs = {r.org_id for r in rows if r.bucket_start == b and r.state in ("sent", "pending")}
            if orgs:
                org_cells |= seam_reader.org_cells(b, orgs)
    decided = rollback_phase.plan_rollback(rows, cells, now, org_cells)
    demoted, raced = demote(svc, decided.demote, now)
    # A row a send worker marked sent since it was read here: Stripe holds it, so it is cancelled like the rest.
    late = rollback_phase.plan_rollback(raced, cells, now, org_cells)
    decided = rollback_phase.RollbackPlan(decided.cancel + late.cancel, decided.manual + late.manual, demoted)
    cancelled, manual = carry_out(svc, stripe, decided, now)
    # Written here; applied is the next check's word (the local app restarted, or the deploy still to run).
    checks = [Check("shadow", True, "SHADOW=true written to the stage's config: once applied, the edge sends "
                                    "nothing more")]
    if not cells:
        checks.append(Check("cells", False, "no cell has reported its status: nothing says which buckets the cells "
                                            "billed, so nothing was cancelled"))
    back = [c for c in cells if c.authority != "cell" or not c.billers_running]
    if back:
        checks.append(Check("cells", False, f"{len(back)} cell(s) still stood down "
                                             f"({', '.join(sorted(c.cell_id for c in back))}): set "
                                             "PRO_BILLING_AUTHORITY=cell, restart, and run rollback again once "
                                             "they report billed_through past the edge's last bucket", wait=True))
    if manual:
        checks.append(Check("manual", False, f"{len(manual)} meter event(s) need a manual credit (listed)"))
    body = rollback_phase.RollbackPlan(cancelled, manual, decided.demote).body()
    return CutoverOutcome("rollback", checks, {"T": t, **body, "cells": [cell_body(c) for c in cells]})


def demote(svc: CutoverDeps, rows: list[OutboxRow], now: int) -> tuple[list[OutboxRow], list[OutboxRow]]:
    """Pending rows of buckets the cells billed go back to shadow; those no longer pending are re-read, and
    the ones a send worker marked sent meanwhile returned (as they are now) beside the rows demoted."""
    demoted: list[OutboxRow] = []
    raced: list[OutboxRow] = []
    why = "cutover rollback: the cells billed this bucket"
    for r in rows:
        if svc.store.transition(r.id, "pending", "shadow", now, detail=why):
            demoted.append(r)
        elif (current := svc.store.get_outbox_row(r.id)) is not None and current.state == "sent":
            raced.append(current)
    return demoted, raced


def carry_out(svc: CutoverDeps, stripe: CutoverStripe, decided: rollback_phase.RollbackPlan,
              now: int) -> tuple[list[OutboxRow], list[tuple[OutboxRow, str]]]:
    cancelled: list[OutboxRow] = []
    manual = list(decided.manual)
    for r in decided.cancel:
        log = {"org_id": r.org_id, "bucket_start": r.bucket_start, "identifier": r.id, "meter": r.meter,
               "value": str(r.value)}
        result = stripe.cancel_meter_event(r.meter, r.id)
        if result.ok:
            # Marked so a re-run never cancels it again; the condition keeps a racing run honest.
            svc.store.transition(r.id, "sent", "cancelled", now, detail="cutover rollback")
            cancelled.append(r)
            logger.warning("meter_event_cancelled", extra=log)
        else:
            manual.append((r, f"Stripe refused the cancellation: {result.detail}"))
            logger.error("meter_event_cancel_refused", extra=log | {"error": result.detail})
    for r, why in manual:
        logger.error("meter_event_needs_manual_credit", extra={"org_id": r.org_id, "bucket_start": r.bucket_start,
                                                                "identifier": r.id, "value": str(r.value),
                                                                "why": why})
    return cancelled, manual
