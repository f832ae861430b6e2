"""The cutover's decisions (CONTRACT section 9), as pure functions over plain data.

Moving Pro billing from the cells to the edge is safe when every bucket is
billed by exactly one side: the cells bill every bucket before their
`billed_through`, the edge every bucket from `BILL_FROM` (= T) once live. So
the seam is right when, for every cell, `billed_through == T` and the cell's
billers have stopped; `billed_through > T` bills [T, billed_through) twice,
`billed_through < T` with the billers stopped bills [billed_through, T) by
nobody. Everything here decides from facts the shell gathered
(`cutover_run.py`); nothing here talks to DynamoDB, Stripe or a log.

Exit codes of every subcommand: 0 all good, 1 a check failed (the output
names why), 2 operator error (bad argument, unreachable store), 3 not yet
(retry later: the cells are still draining, no live bucket has closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.core.cell_reports import CellStatus, ParityReport, drift_exceeds
from chalicelib.core.outbox import OutboxRow
from chalicelib.settings import SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_YET = 3

# What the edge's one webhook endpoint must subscribe to (webhook.HANDLED_TYPES; a test keeps them equal).
REQUIRED_WEBHOOK_EVENTS = ("checkout.session.completed", "customer.subscription.created",
                           "customer.subscription.deleted")
WEBHOOK_PATH = "/webhooks/stripe"
SOAK_SECONDS = 24 * 3600
# Stripe cancels a meter event only within 24 h of receipt; keep a margin for the clock and the call.
ADJUST_WINDOW_SECONDS = 86400
ADJUST_MARGIN_SECONDS = 600
# The schedule rolls every 15 minutes: a closed bucket may wait that long for its run.
RUN_EVERY_SECONDS = 900
FLAG_NAMES = ("SHADOW", "BILL_FROM", "BUCKET_SECONDS", "GRACE_SECONDS")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    why: str
    wait: bool = False  # failing only because it is too early: the same command later may pass

    def body(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "why": self.why} | ({"retry_later": True} if self.wait else {})


def exit_code(checks: Sequence[Check]) -> int:
    failing = [c for c in checks if not c.ok]
    if not failing:
        return EXIT_OK
    return EXIT_NOT_YET if all(c.wait for c in failing) else EXIT_FAILED


def boundary_error(t: int, bucket: int) -> str | None:
    if t <= 0 or t % bucket:
        return f"T={t} is not a positive multiple of BUCKET_SECONDS={bucket}: the seam must fall on a bucket boundary"
    return None


def span(start: int, end: int) -> str:
    return f"[{start}, {end})"


# --- preflight -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    enabled_events: tuple[str, ...]
    status: str


def check_catalog(published: Iterable[str], required: Iterable[str]) -> Check:
    keys = set(published)
    if not keys:
        return Check("catalog", False, "the price catalog is empty: run `ensure-products` before the webhook "
                                       "can provision anyone")
    missing = sorted(set(required) - keys)
    if missing:
        return Check("catalog", False, f"the published catalog lacks {', '.join(missing)}: create the missing "
                                       "prices (dashboard ones by hand) and run `ensure-products`")
    return Check("catalog", True, f"{len(keys)} prices published")


def check_webhook(endpoints: Sequence[WebhookEndpoint]) -> Check:
    enabled = [e for e in endpoints if e.status == "enabled"]
    if not enabled:
        return Check("webhook", False, "no enabled Stripe webhook endpoint: register the edge's "
                                       f"{WEBHOOK_PATH} (docs/stripe.md)")
    if len(enabled) > 1:
        urls = ", ".join(e.url for e in enabled)
        return Check("webhook", False, f"{len(enabled)} enabled webhook endpoints ({urls}): each would provision; "
                                       "keep exactly the edge's one")
    endpoint = enabled[0]
    if not endpoint.url.rstrip("/").endswith(WEBHOOK_PATH):
        return Check("webhook", False, f"the one endpoint {endpoint.url} is not the edge's {WEBHOOK_PATH}")
    missing = [] if "*" in endpoint.enabled_events else [
        e for e in REQUIRED_WEBHOOK_EVENTS if e not in endpoint.enabled_events]
    if missing:
        return Check("webhook", False, f"endpoint {endpoint.url} does not subscribe to {', '.join(missing)}")
    return Check("webhook", True, f"one endpoint {endpoint.url} with the required events")


def soak_window(now: int, bucket: int, grace: int, soak_seconds: int = SOAK_SECONDS) -> tuple[int, int]:
    """The settled hours a clean soak must cover: ending at the last boundary a cell has had a full
    bucket (plus grace) to report on."""
    end = (now - grace - bucket) // bucket * bucket
    return end - soak_seconds, end


def coverage_gaps(windows: Iterable[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    at = start
    for w_from, w_to in sorted(windows):
        if w_to <= at:
            continue
        if w_from > at:
            gaps.append((at, min(w_from, end)))
        at = max(at, w_to)
        if at >= end:
            break
    if at < end:
        gaps.append((at, end))
    return [g for g in gaps if g[0] < g[1]]


def check_cell_parity(cell_id: str, reports: Sequence[ParityReport], start: int, end: int) -> Check:
    name = f"parity:{cell_id}"
    inside = [r for r in reports if r.window_to > start and r.window_from < end]
    dirty = [r for r in inside if not r.clean or drift_exceeds(r)]
    if dirty:
        first = dirty[0]
        worst = first.worst_org
        detail = f" (worst org {worst.org_id}, drift {worst.drift}, tolerance {first.tolerance})" if worst else ""
        return Check(name, False, f"{len(dirty)} report(s) not clean, first {span(first.window_from, first.window_to)}"
                                  f"{detail}: explain the drift, then soak 24 h clean again")
    gaps = coverage_gaps(((r.window_from, r.window_to) for r in inside), start, end)
    if gaps:
        missing = sum(b - a for a, b in gaps)
        return Check(name, False, f"no parity report for {missing} s of the soak {span(start, end)}, first gap "
                                  f"{span(*gaps[0])}: the soak needs every settled hour of the last 24 reported clean",
                     wait=True)
    return Check(name, True, f"{len(inside)} clean report(s) cover {span(start, end)}")


def check_parity(cells: Sequence[str], reports: Mapping[str, Sequence[ParityReport]],
                 start: int, end: int) -> list[Check]:
    if not cells:
        return [Check("parity", False, "no cell has reported its status (PUT /internal/cells): the edge knows no "
                                       "cells, so it cannot know their soak is clean")]
    return [check_cell_parity(c, reports.get(c, ()), start, end) for c in sorted(cells)]


@dataclass(frozen=True)
class StageFlags:
    """One stage of .chalice/config.json: its environment and each Lambda's overrides."""

    stage: str
    env: Mapping[str, str]
    functions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> str:
        return str(self.env.get(name, default))


def check_flags(flags: StageFlags, cells: Sequence[CellStatus], running_shadow: bool | None) -> list[Check]:
    """Before the cutover: the stage's flags parse, every Lambda agrees, the edge is in shadow, cells bill."""
    checks: list[Check] = []
    try:
        settings = load_settings({k: str(v) for k, v in flags.env.items()})
    except SettingsError as exc:
        return [Check("flags", False, f"stage {flags.stage}: {exc}")]
    for fn, overrides in sorted(flags.functions.items()):
        clash = {k: v for k, v in overrides.items() if k in FLAG_NAMES and str(v) != flags.value(k)}
        if clash:
            checks.append(Check("flags", False, f"Lambda {fn} overrides {clash} in stage {flags.stage}: the API "
                                                "and the schedule would bill by different flags"))
    if not settings.SHADOW:
        checks.append(Check("flags", False, f"stage {flags.stage} is live already (SHADOW=false, BILL_FROM="
                                            f"{settings.BILL_FROM}): preflight is for a stage still in shadow"))
    if running_shadow is not None and running_shadow != settings.SHADOW:
        checks.append(Check("flags", False, f"the running app says shadow={running_shadow} but the config says "
                                            f"SHADOW={settings.SHADOW}: deploy the stage first"))
    for c in cells:
        if c.authority != "cell" or not c.billers_running:
            checks.append(Check("flags", False, f"cell {c.cell_id} reports authority={c.authority}, billers_running="
                                                f"{c.billers_running} while the edge is in shadow: nobody bills it"))
    return checks or [Check("flags", True, f"stage {flags.stage}: shadow, flags valid and consistent, cells bill")]


# --- plan ------------------------------------------------------------------------------------------

def propose_t(now: int, bucket: int, lead: int, usage_by_bucket: Mapping[int, Decimal],
              horizon: int = 86400) -> int:
    """The next quiet boundary: among boundaries at least `lead` ahead (within `horizon`), the one whose
    two neighbouring buckets a day earlier carried the least usage; the earliest on a tie."""
    first = -(-(now + lead) // bucket) * bucket
    candidates = range(first, first + max(bucket, min(horizon, 48 * bucket)), bucket)

    def load(t: int) -> Decimal:
        day_before = t - 86400
        return usage_by_bucket.get(day_before - bucket, Decimal(0)) + usage_by_bucket.get(day_before, Decimal(0))

    return min(candidates, key=lambda t: (load(t), t))


def plan_body(flags: StageFlags, t: int, others: Sequence[StageFlags] = ()) -> dict[str, Any]:
    stage = flags.stage
    now_flags = {k: flags.value(k) for k in ("SHADOW", "BILL_FROM", "BUCKET_SECONDS")}
    cli = f"python -m chalicelib.cli cutover {{}} --stage {stage}"
    return {
        "stage": stage,
        "T": t,
        "steps": [
            f"1. {cli.format('preflight')}: catalog, one webhook endpoint, 24 h of clean parity, flags",
            f"2. drain every cell to T={t}: its billers bill every bucket before T and flush to Stripe",
            f"3. {cli.format(f'drain-check --at {t}')} until it exits 0",
            f"4. {cli.format(f'arm --at {t}')}: BILL_FROM={t}, SHADOW=false, applied",
            "5. every cell: PRO_BILLING_AUTHORITY=edge and restart (billers stop, creates need cap-tokens)",
            f"6. {cli.format('verify')} once the first live bucket has been rolled",
            f"rollback: {cli.format('rollback')}, cells back to PRO_BILLING_AUTHORITY=cell; within 24 h",
        ],
        "flags": {
            stage: {"now": now_flags,
                    "after_arm": now_flags | {"SHADOW": "false", "BILL_FROM": str(t)},
                    "after_rollback": now_flags | {"SHADOW": "true", "BILL_FROM": str(t)}},
            **{o.stage: {"now": {k: o.value(k) for k in ("SHADOW", "BILL_FROM", "BUCKET_SECONDS")},
                         "unchanged": True} for o in others if o.stage != stage},
        },
        "cells": {"PRO_BILLING_AUTHORITY": {"now": "cell", "after_switch": "edge", "after_rollback": "cell"}},
    }


# --- drain -------------------------------------------------------------------------------------

def check_fresh(c: CellStatus, now: int, stale_after: int) -> Check | None:
    age = now - c.reported_at
    if age > stale_after:
        return Check(f"cell:{c.cell_id}", False, f"last reported {age} s ago (> {stale_after} s): its status is "
                                                 "too old to trust; is its reporter running?")
    return None


def drain_check(c: CellStatus, t: int) -> Check:
    name = f"cell:{c.cell_id}"
    if c.billed_through > t:
        return Check(name, False, f"billed through {c.billed_through} > T={t}: T is too early, buckets "
                                  f"{span(t, c.billed_through)} would be billed twice; choose T >= "
                                  f"{c.billed_through}")
    if c.billed_through < t and not c.billers_running:
        return Check(name, False, f"billed through {c.billed_through} < T={t} and its billers are stopped: "
                                  f"{span(c.billed_through, t)} would be billed by nobody; restart them or "
                                  f"choose T={c.billed_through}")
    if c.billed_through < t:
        return Check(name, False, f"billed through {c.billed_through}, not yet T={t}: still draining", wait=True)
    if c.pending_billable:
        return Check(name, False, f"{c.pending_billable} billable event(s) not yet sent to Stripe", wait=True)
    return Check(name, True, f"billed through T={t}, nothing pending")


def drain_checks(cells: Sequence[CellStatus], t: int, now: int, stale_after: int) -> list[Check]:
    if not cells:
        return [Check("cells", False, "no cell has reported its status: nothing says the cells are drained")]
    out: list[Check] = []
    for c in sorted(cells, key=lambda c: c.cell_id):
        out.append(check_fresh(c, now, stale_after) or drain_check(c, t))
    return out


# --- verify ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BucketVerdict:
    bucket_start: int
    cells: tuple[str, ...]  # cells that billed it
    edge: bool  # the edge bills it (bucket >= T), or sent events for it
    edge_events: int  # meter events the edge sent for it
    verdict: str  # "cell", "edge", "both", "neither"

    def body(self) -> dict[str, Any]:
        return {"bucket_start": self.bucket_start, "cells": list(self.cells), "edge": self.edge,
                "edge_events": self.edge_events, "verdict": self.verdict}


def seam(cells: Sequence[CellStatus], t: int, bucket: int, sent: Sequence[OutboxRow], around: int = 2,
         last_closed: int | None = None) -> list[BucketVerdict]:
    """Who billed each bucket around T, per cell: both or neither is a broken seam."""
    edges = [c.billed_through for c in cells] + [t]
    lo = min(edges) - around * bucket
    hi = max(edges) + around * bucket
    if last_closed is not None:
        hi = min(hi, max(last_closed + bucket, t))
    sent_per_bucket: dict[int, int] = {}
    for r in sent:
        sent_per_bucket[r.bucket_start] = sent_per_bucket.get(r.bucket_start, 0) + 1
    out: list[BucketVerdict] = []
    for b in range(lo - lo % bucket, hi, bucket):
        billing = tuple(sorted(c.cell_id for c in cells if b < c.billed_through))
        edge = b >= t or sent_per_bucket.get(b, 0) > 0
        missing = [c for c in cells if b >= c.billed_through and not c.billers_running]
        if billing and edge:
            verdict = "both"
        elif not edge and missing:
            verdict = "neither"
        else:
            verdict = "edge" if edge else "cell"
        out.append(BucketVerdict(b, billing, edge, sent_per_bucket.get(b, 0), verdict))
    return out


def check_seam(verdicts: Sequence[BucketVerdict]) -> list[Check]:
    both = [v for v in verdicts if v.verdict == "both"]
    neither = [v for v in verdicts if v.verdict == "neither"]
    checks: list[Check] = []
    if both:
        checks.append(Check("seam", False, f"{len(both)} bucket(s) billed by both the edge and a cell, from "
                                           f"{both[0].bucket_start} (cells {', '.join(both[0].cells)}; edge events "
                                           f"sent {sum(v.edge_events for v in both)}): cancel with "
                                           "`cutover rollback` or re-arm at the cells' billed_through"))
    if neither:
        checks.append(Check("seam", False, f"{len(neither)} bucket(s) billed by nobody, from "
                                           f"{neither[0].bucket_start}: the cells stopped before T; re-arm with T "
                                           "at the cells' billed_through (the edge then bills them)"))
    return checks or [Check("seam", True, f"{len(verdicts)} bucket(s) around T each billed exactly once")]


def check_cells_stood_down(cells: Sequence[CellStatus], t: int) -> list[Check]:
    if not cells:
        return [Check("cells", False, "no cell has reported its status")]
    out = []
    for c in sorted(cells, key=lambda c: c.cell_id):
        if c.authority != "edge" or c.billers_running:
            out.append(Check(f"cell:{c.cell_id}", False,
                             f"authority={c.authority}, billers_running={c.billers_running}: the cell still bills; "
                             "every bucket from T it bills is billed twice; set PRO_BILLING_AUTHORITY=edge"))
        else:
            out.append(Check(f"cell:{c.cell_id}", True, f"authority=edge, billers stopped, billed through "
                                                        f"{c.billed_through}"))
    return out


def check_flowing(rows: Sequence[OutboxRow], t: int, bucket: int, grace: int, now: int,
                  run_every: int = RUN_EVERY_SECONDS) -> Check:
    """Meter events flow: buckets from T that have had time to roll have rows, sent, none stuck or failed."""
    live = [r for r in rows if r.bucket_start >= t]
    first_due = t + bucket + grace + run_every
    stuck_before = now - 2 * run_every
    shadow = [r for r in live if r.state == "shadow"]
    failed = [r for r in live if r.state == "failed"]
    stuck = [r for r in live if r.state == "pending" and r.bucket_end + grace < stuck_before]
    sent = [r for r in live if r.state in ("sent", "cancelled")]
    if shadow:
        return Check("flowing", False, f"{len(shadow)} row(s) from T are still shadow: the rollup is not live "
                                       "(SHADOW=false not applied where it runs)")
    if failed:
        return Check("flowing", False, f"{len(failed)} meter event(s) from T rejected by Stripe, first "
                                       f"{failed[0].id}: {failed[0].detail}")
    if stuck:
        return Check("flowing", False, f"{len(stuck)} meter event(s) from T pending for over {2 * run_every} s, "
                                       f"first {stuck[0].id}: customers missing, or Stripe failing")
    if sent:
        return Check("flowing", True, f"{len(sent)} meter event(s) sent for buckets from T")
    if now < first_due:
        return Check("flowing", False, f"no live bucket rolled yet: the first, {span(t, t + bucket)}, is rolled "
                                       f"by {first_due}", wait=True)
    return Check("flowing", False, f"no meter event sent for any bucket from T={t} by {now}: is the rollup "
                                   "scheduled and live?")


def check_armed(flags: StageFlags, t: int) -> Check:
    if flags.value("SHADOW", "true") != "false" or flags.value("BILL_FROM", "0") != str(t):
        return Check("armed", False, f"stage {flags.stage} has SHADOW={flags.value('SHADOW')} BILL_FROM="
                                     f"{flags.value('BILL_FROM')}, not SHADOW=false BILL_FROM={t}: run arm")
    return Check("armed", True, f"SHADOW=false, BILL_FROM={t}")


# --- rollback ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RollbackPlan:
    cancel: list[OutboxRow]  # sent for a bucket a cell billed, received by Stripe under 24 h ago
    manual: list[tuple[OutboxRow, str]]  # the rest of those, with why: credit them by hand
    demote: list[OutboxRow]  # pending rows of such buckets: back to shadow so no later run sends them

    def body(self) -> dict[str, Any]:
        def row(r: OutboxRow) -> dict[str, Any]:
            return {"id": r.id, "org_id": r.org_id, "bucket_start": r.bucket_start, "meter": r.meter,
                    "value": str(r.value), "sent_at": r.sent_at}

        return {"cancel": [row(r) for r in self.cancel],
                "manual_credit": [row(r) | {"why": why} for r, why in self.manual],
                "demote": [row(r) for r in self.demote]}


def billed_by_cells(row: OutboxRow, cells: Sequence[CellStatus],
                    org_cells: Mapping[tuple[str, int], frozenset[str]] | None) -> bool | None:
    """Did the cells bill this row's usage too? None when only part of it (an operator decides)."""
    billing = {c.cell_id for c in cells if row.bucket_start < c.billed_through}
    if not billing:
        return False
    if len(billing) == len(cells):
        return True
    sources = (org_cells or {}).get((row.org_id, row.bucket_start))
    if sources is None:
        return None
    if sources <= billing:
        return True
    return None if sources & billing else False


def plan_rollback(rows: Sequence[OutboxRow], cells: Sequence[CellStatus], now: int,
                  org_cells: Mapping[tuple[str, int], frozenset[str]] | None = None) -> RollbackPlan:
    plan = RollbackPlan([], [], [])
    for r in sorted(rows, key=lambda r: (r.bucket_start, r.id)):
        if r.state not in ("sent", "pending"):
            continue
        billed = billed_by_cells(r, cells, org_cells)
        if billed is False:
            continue
        if r.state == "pending":
            if billed:
                plan.demote.append(r)
            continue
        if billed is None:
            plan.manual.append((r, "part of this org's usage in the bucket came from a cell that billed it: "
                                   "credit that part by hand"))
        elif r.sent_at is not None and now - r.sent_at < ADJUST_WINDOW_SECONDS - ADJUST_MARGIN_SECONDS:
            plan.cancel.append(r)
        else:
            plan.manual.append((r, f"sent at {r.sent_at}, over 24 h ago: Stripe no longer cancels it; credit "
                                   f"{r.value} on {r.meter} by hand"))
    return plan
