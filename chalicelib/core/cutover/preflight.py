"""Preflight: the catalog published, one webhook endpoint, 24 h of clean parity from every cell, the flags."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chalicelib.core.cell_reports import CellStatus, ParityReport, drift_exceeds
from chalicelib.core.cutover.checks import Check, StageFlags, span

# What the edge's one webhook endpoint must subscribe to (webhook.HANDLED_TYPES; a test keeps them equal).
REQUIRED_WEBHOOK_EVENTS = ("checkout.session.completed", "customer.subscription.created",
                           "customer.subscription.deleted")
WEBHOOK_PATH = "/webhooks/stripe"
SOAK_SECONDS = 24 * 3600
FLAG_NAMES = ("SHADOW", "BILL_FROM", "BUCKET_SECONDS", "GRACE_SECONDS")


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
                                  f"{span(*gaps[0])}: the soak needs every settled bucket of the last 24 h reported "
                                  "clean",
                     wait=True)
    return Check(name, True, f"{len(inside)} clean report(s) cover {span(start, end)}")


def check_parity(cells: Sequence[str], reports: Mapping[str, Sequence[ParityReport]],
                 start: int, end: int) -> list[Check]:
    if not cells:
        return [Check("parity", False, "no cell has reported its status (PUT /internal/cells): the edge knows no "
                                       "cells, so it cannot know their soak is clean")]
    return [check_cell_parity(c, reports.get(c, ()), start, end) for c in sorted(cells)]


@dataclass(frozen=True)
class FlagValues:
    """The stage's flags as the app would parse them (the shell parses; a str is why they would not start)."""

    shadow: bool
    bill_from: int


def check_flags(flags: StageFlags, parsed: FlagValues | str, cells: Sequence[CellStatus],
                running_shadow: bool | None) -> list[Check]:
    """Before the cutover: the stage's flags parse, every Lambda agrees, the edge is in shadow, cells bill."""
    checks: list[Check] = []
    if isinstance(parsed, str):
        return [Check("flags", False, f"stage {flags.stage}: {parsed}")]
    for fn, overrides in sorted(flags.functions.items()):
        clash = {k: v for k, v in overrides.items() if k in FLAG_NAMES and str(v) != flags.value(k)}
        if clash:
            checks.append(Check("flags", False, f"Lambda {fn} overrides {clash} in stage {flags.stage}: the API "
                                                "and the schedule would bill by different flags"))
    if not parsed.shadow:
        checks.append(Check("flags", False, f"stage {flags.stage} is live already (SHADOW=false, BILL_FROM="
                                            f"{parsed.bill_from}): preflight is for a stage still in shadow"))
    if running_shadow is not None and running_shadow != parsed.shadow:
        checks.append(Check("flags", False, f"the running app says shadow={running_shadow} but the config says "
                                            f"SHADOW={parsed.shadow}: deploy the stage first"))
    for c in cells:
        if c.authority != "cell" or not c.billers_running:
            checks.append(Check("flags", False, f"cell {c.cell_id} reports authority={c.authority}, billers_running="
                                                f"{c.billers_running} while the edge is in shadow: nobody bills it"))
    return checks or [Check("flags", True, f"stage {flags.stage}: shadow, flags valid and consistent, cells bill")]
