"""The cell's half of the free tier (CONTRACT section 10): halt and resume an org, and reconcile.

- `halt`: record the org halted (under its lock: a create racing it commits before, and is stopped
  here, or after, and is refused), then stop each of its running sandboxes as a proper state change
  (`Ticker.change`, reason `credits_exhausted`, status `halted`): its last tick ends at the halt and
  nothing ticks after. Idempotent: a halt of a halted org stops whatever still runs.
- `resume`: clear the halt, then wake exactly the sandboxes the halt stopped (status `halted`),
  never one its user stopped. A crash in between is repaired by `reconcile` (a `halted` sandbox of
  an org that is not halted is woken).
- `reconcile`: make the cell's halts equal the edge's list (`GET /internal/halted-orgs`), every minute.

`AdminHandler` is what a cell's control plane mounts under /admin/halt-org and /admin/resume-org:
HMAC-verified as CONTRACT section 1, answering JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from cellkit.ports import Clock, EdgeApi, HaltStore, TransportError
from cellkit.services.ticker import OrgHalted, SandboxNotRunning, Ticker

REASON = "credits_exhausted"
HALTED_PATH = "/internal/halted-orgs"
WINDOW_S = 300


@dataclass
class HaltOutcome:
    org_id: str
    changed: bool  # the org's halt state changed (False: it already was as asked)
    sandboxes: list[str] = field(default_factory=list)  # stopped by a halt, woken by a resume

    def body(self) -> dict[str, Any]:
        return {"ok": True, "org_id": self.org_id, "changed": self.changed, "sandboxes": self.sandboxes}


class Halts:
    def __init__(self, halts: HaltStore, ticker: Ticker, clock: Clock, log: logging.Logger) -> None:
        self.store, self.ticker, self.clock, self.log = halts, ticker, clock, log

    def halt(self, org_id: str, reason: str = REASON) -> HaltOutcome:
        now = self.clock.now_us()
        changed = self.store.set_org_halt(org_id, True, now, reason)
        at_us = self.store.halted_orgs().get(org_id, (now, reason))[0]
        outcome = HaltOutcome(org_id, changed)
        for sbx in self.store.org_sandboxes(org_id, "running"):
            try:
                self.ticker.change(sbx.sandbox_id, REASON, at_us, lambda s: replace(s, status="halted"))
            except SandboxNotRunning:
                continue  # stopped meanwhile by its user: it stays stopped
            outcome.sandboxes.append(sbx.sandbox_id)
        self.log.warning("org_halted", extra={"org_id": org_id, "reason": reason, "changed": changed,
                                              "stopped": outcome.sandboxes, "halted_at_us": at_us})
        return outcome

    def resume(self, org_id: str) -> HaltOutcome:
        changed = self.store.set_org_halt(org_id, False, self.clock.now_us(), "")
        outcome = HaltOutcome(org_id, changed, self._wake(org_id))
        self.log.info("org_resumed", extra={"org_id": org_id, "changed": changed, "woken": outcome.sandboxes})
        return outcome

    def _wake(self, org_id: str) -> list[str]:
        woken = []
        for sbx in self.store.org_sandboxes(org_id, "halted"):
            try:
                self.ticker.start(sbx.sandbox_id, sbx.org_id, sbx.plan, sbx.memory_mb, sbx.cpu_count,
                                  worker_id=sbx.worker_id)
            except OrgHalted:
                break  # halted again meanwhile: they stay stopped until the next resume
            woken.append(sbx.sandbox_id)
        return woken

    def reconcile(self, listed: set[str]) -> dict[str, list[str]]:
        """Halt what the edge lists, resume what it no longer lists, wake what a crash left halted."""
        local = set(self.store.halted_orgs())
        # A listed org is halted again only if it is new here or something of it still runs (a repair).
        halted = [o for o in sorted(listed) if (o not in local or self.store.org_sandboxes(o, "running"))
                  and self.halt(o)]
        resumed = [o for o in sorted(local - listed) if self.resume(o).changed]
        stranded = {s.org_id for s in self.store.org_sandboxes(None, "halted")} - listed - set(resumed)
        repaired = [o for o in sorted(stranded) if self._wake(o)]
        if halted or resumed or repaired:
            self.log.warning("halt_reconciled", extra={"halted": halted, "resumed": resumed, "woken": repaired})
        return {"halted": halted, "resumed": resumed, "woken": repaired}


class HaltListUnavailable(RuntimeError):
    pass


def pull_halted(edge: EdgeApi) -> set[str]:
    """The edge's halted orgs (HMAC GET)."""
    try:
        resp = edge.get(HALTED_PATH, [("cell_id", edge.cell_id)])
    except TransportError as exc:
        raise HaltListUnavailable(f"halted list unreachable: {exc}") from None
    if resp.status != 200:
        raise HaltListUnavailable(f"halted list answered {resp.status}: {resp.body[:200]!r}")
    return {str(o["org_id"]) for o in json.loads(resp.body)["orgs"]}


class AdminHandler:
    """POST /admin/halt-org {"org_id", "reason"} and /admin/resume-org {"org_id"}, signed by the edge."""

    def __init__(self, halts: Halts, secret: str, clock: Clock) -> None:
        self.halts, self.secret, self.clock = halts, secret, clock

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        lowered = {k.lower(): v for k, v in headers.items()}
        problem = self._verify(lowered.get("x-timestamp"), lowered.get("x-signature"), body)
        if problem is not None:
            return problem
        try:
            data = json.loads(body)
            org_id = data["org_id"]
            if not isinstance(org_id, str) or not org_id.isprintable() or not 0 < len(org_id) <= 256:
                raise ValueError("org_id must be 1 to 256 printable characters")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"body must be a JSON object with org_id: {exc}"}
        if path.rstrip("/").endswith("/admin/halt-org"):
            return 200, self.halts.halt(org_id, str(data.get("reason") or REASON)).body()
        if path.rstrip("/").endswith("/admin/resume-org"):
            return 200, self.halts.resume(org_id).body()
        return 404, {"error": f"no such route: {path}"}

    def _verify(self, ts: str | None, sig: str | None, body: bytes) -> tuple[int, dict[str, Any]] | None:
        if not ts or not sig:
            return 400, {"error": "X-Timestamp and X-Signature are required"}
        if not ts.isdigit() or abs(self.clock.now_us() // 1_000_000 - int(ts)) > WINDOW_S:
            return 401, {"error": "X-Timestamp is not within 300 s of the cell's clock"}
        expected = hmac.new(self.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            return 401, {"error": "bad signature"}
        return None
