"""Halt and resume pushes to the cells (CONTRACT section 10), from the outstanding notices.

Each halt or resume leaves one notice per org (the latest replaces any older one, in the same
transaction as the account's change). A round pushes it to every cell that registered a base_url
and has not acked this notice yet, records who acked, and either drops the notice (every cell
acked) or schedules the next try with capped backoff; the rounds run with every spend pass.
A cell that never acks is repaired by its own reconciler (GET /internal/halted-orgs every minute)
and raises the HaltPushFailing alarm (docs/runbook.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.core.credits import HALT_REASON, PUSH_ALARM_ATTEMPTS, Notice, next_push_at
from chalicelib.credit_ports import CellPusher, CreditStore
from chalicelib.observability import logger
from chalicelib.ports import CellStore, RunControl
from chalicelib.services.credits import run_spend_pass
from chalicelib.settings import Settings

HALT_PATH = "/admin/halt-org"
RESUME_PATH = "/admin/resume-org"


@dataclass
class PushResult:
    pushed: int = 0
    acked: int = 0
    failed: int = 0
    done: int = 0
    halts: int = 0  # notices pushed for the first time: one per halt and per resume (the metrics)
    resumes: int = 0
    failing: list[str] = field(default_factory=list)  # orgs whose pushes failed PUSH_ALARM_ATTEMPTS times

    def body(self) -> dict[str, Any]:
        return {"pushed": self.pushed, "acked": self.acked, "failed": self.failed, "done": self.done,
                "halts": self.halts, "resumes": self.resumes, "failing": self.failing}


def notice_request(notice: Notice) -> tuple[str, dict[str, Any]]:
    if notice.kind == "halt":
        return HALT_PATH, {"org_id": notice.org_id, "reason": HALT_REASON}
    return RESUME_PATH, {"org_id": notice.org_id}


def push_notices(credits: CreditStore, cells: CellStore, pusher: CellPusher, now: int) -> PushResult:
    result = PushResult()
    targets = {c.cell_id: c.base_url for c in cells.cell_statuses() if c.base_url}
    for notice in credits.notices():
        if notice.next_at > now:
            continue
        path, body = notice_request(notice)
        if notice.attempts == 0 and not notice.acked:
            result.halts += notice.kind == "halt"
            result.resumes += notice.kind == "resume"
        acked: set[str] = set()
        for cell_id in sorted(set(targets) - notice.acked):
            result.pushed += 1
            if _push(pusher, targets[cell_id], path, body, cell_id):
                acked.add(cell_id)
        result.acked += len(acked)
        missing = set(targets) - notice.acked - acked
        attempts = notice.attempts + 1 if missing else 0
        if missing:
            result.failed += 1
            if attempts >= PUSH_ALARM_ATTEMPTS:
                result.failing.append(notice.org_id)
            logger.warning("halt_push_unacked", extra={"org_id": notice.org_id, "kind": notice.kind,
                                                       "cells": sorted(missing), "attempts": attempts})
        saved = replace(notice, attempts=attempts, next_at=next_push_at(attempts, now))
        if credits.record_push(saved, acked, done=not missing) and not missing:
            result.done += 1
    return result


def _push(pusher: CellPusher, base_url: str, path: str, body: dict[str, Any], cell_id: str) -> bool:
    try:
        return pusher.push(base_url, path, body)
    except Exception as exc:  # a cell's failure is that cell's: the round goes on to the others
        logger.warning("halt_push_failed", extra={"cell_id": cell_id, "path": path, "error": str(exc)})
        return False


def credit_round(control: RunControl, credits: CreditStore, cells: CellStore, pusher: CellPusher,
                 settings: Settings, now: int) -> dict[str, Any]:
    """What the one-minute schedule (and POST /run) does for the free tier: spend, then push."""
    spent = run_spend_pass(control, credits, settings, now)
    pushed = push_notices(credits, cells, pusher, now)
    return {"pass": spent.body(), "push": pushed.body()}
