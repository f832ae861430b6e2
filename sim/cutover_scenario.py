"""`make run`'s scenario: the cells, the fleet's schedule (soak, plan changes, cap-tokens, a cut-off
forwarder), and the operator's cutover commands, step by step, exactly as an operator runs them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cellkit.core.usage import OrgRow
from sim.cells import CellConfig, CutoverCell
from sim.cutover_display import Ui
from sim.cutover_orgs import CELL_SETTLE_SECONDS, ORGS, RESIZES, ROOT, STARTS, STOPS, US, OrgSpec, Run
from sim.cutover_stripe import cancel, checkout
from sim.seam_fleet import SeamLoop
from sim.truth import PlanChange

log = logging.getLogger("sim.cutover")


def cutover_cli(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    """`python -m sim.operator cutover ... --stage local --json`: the operator CLI, with the local stack."""
    argv = [sys.executable, "-m", "sim.operator", "cutover", *args, "--stage", "local", "--json"]
    done = subprocess.run(argv, cwd=ROOT, env=os.environ | run.info.cli_env(), capture_output=True, text=True,
                          timeout=300)
    try:
        body: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        body = {"output": (done.stdout + done.stderr)[-2000:]}
    failing = [c["why"] for c in body.get("checks", []) if not c.get("ok")]
    run.cli.append({"command": " ".join(["cutover", *args]), "at": int(time.time()), "exit_code": done.returncode,
                    "failing": failing})
    log.info("cutover_cli", extra={"argv": list(args), "exit_code": done.returncode, "failing": failing})
    return done.returncode, body


def make_cells(run: Run, log_: logging.Logger) -> dict[str, CutoverCell]:
    cells_dir = ROOT / ".local" / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    info = run.info
    cells = {}
    for cell_id in sorted({o.cell_id for o in ORGS}):
        cfg = CellConfig(cell_id, cells_dir / f"{cell_id}.db", info.api_url, info.event_secret, info.jwt_secret,
                         info.stripe_api_key, info.stripe_url, run.bucket, run.grace, CELL_SETTLE_SECONDS)
        cells[cell_id] = CutoverCell(cfg, log_)
    for org in ORGS:
        # The cell's own org row (its pre-cutover billing authority), as the control plane keeps it.
        cells[org.cell_id].put_org(OrgRow(org.org_id, org.plan, org.mode,  # type: ignore[arg-type]
                                          run.customers.get(org.org_id)))
    return cells


def plan_change(run: Run, fleet: SeamLoop, org: OrgSpec, boundary: int, plan: str,
                apply: Callable[[], object]) -> None:
    """A plan change that takes effect at a bucket boundary, on both sides of the wire.

    The edge classifies a tick by the org's plan when it arrives, the cell bills a whole bucket by its org row
    when it settles it. So: tick the cell exactly at the boundary, deliver its spool, then send the webhook
    (the edge: every later tick is `plan`); the cell's org row changes once it has settled and parity-checked
    the bucket before the boundary (its org row holds one plan, not a history)."""
    cell = fleet.cells[org.cell_id]
    # Scheduled late (the operator's steps before it ran long on a busy machine), the boundary moves to the next
    # one the fleet has not stepped past yet: ticking "exactly at the boundary" is only possible ahead of it.
    boundary = max(boundary, next_boundary(time.time() + 1, run.bucket))

    def at_boundary(_: int) -> None:
        if any(s.last_tick_us > boundary * US for s in cell.store.running_sandboxes()):
            raise RuntimeError(f"{org.cell_id} ticked past {boundary} before {org.org_id}'s plan change there")
        cell.tick_at(boundary * US)
        fleet.flush(org.cell_id)
        apply()
        fleet.ledger.changes.append(PlanChange(org.org_id, boundary * US, plan))

    def cell_row(now: int) -> None:
        # Run late, this would come before the cell's own step at `now`: let the cell settle and parity-check
        # what is due by `now` under its old row first, as it would have on time (waiting out the edge's
        # 503s while its workers settle the bucket before the boundary).
        cell.step(now)
        cell.parity_until(boundary)
        cell.put_org(OrgRow(org.org_id, plan, org.mode, run.customers.get(org.org_id)))  # type: ignore[arg-type]

    fleet.at(boundary * US, f"{org.org_id} -> {plan} (webhook)", at_boundary)
    fleet.at((boundary + max(run.grace, CELL_SETTLE_SECONDS) + 1) * US + US // 2, f"{org.org_id} cell row -> {plan}",
             cell_row)


def schedule_soak(run: Run, fleet: SeamLoop, b0: int) -> None:
    w = run.bucket
    for k, off, cell_id, sbx, org, mb in STARTS:
        fleet.at(int((b0 + k * w + off) * US), f"start {sbx}", partial(_created, fleet, cell_id, sbx, org, mb))
    for k, off, cell_id, sbx, mb in RESIZES:
        fleet.at(int((b0 + k * w + off) * US), f"resize {sbx} {mb}", partial(_resized, fleet, cell_id, sbx, mb))
    for k, off, cell_id, sbx in STOPS:
        fleet.at(int((b0 + k * w + off) * US), f"stop {sbx}", partial(fleet.stop_sandbox, cell_id, sbx))
    stark = next(o for o in ORGS if o.org_id == "stark")
    plan_change(run, fleet, stark, b0 + 3 * w, "pro", lambda: checkout(run, "stark"))


def _resized(fleet: SeamLoop, cell_id: str, sandbox_id: str, memory_mb: int, now: int) -> None:
    fleet.resize(cell_id, sandbox_id, memory_mb, now)


def _created(fleet: SeamLoop, cell_id: str, sandbox_id: str, org_id: str, memory_mb: int, now: int) -> None:
    status = fleet.create(cell_id, sandbox_id, org_id, memory_mb, now)
    if status != 201:
        raise RuntimeError(f"create {sandbox_id} answered {status}: {fleet.refused[-1]}")


def _refused(fleet: SeamLoop, cell_id: str, sandbox_id: str, org_id: str, now: int) -> None:
    """In edge mode a create without a cap-token must be refused (401): recorded, and checked in the report."""
    fleet.create(cell_id, sandbox_id, org_id, 1024, now, with_token=False)


def schedule_live(run: Run, fleet: SeamLoop, end: int) -> None:
    """After T: creates with cap-tokens (and one without, refused), a downgrade, a cut-off forwarder."""
    t, w = run.t, run.bucket
    fleet.at((t + w + 3) * US, "create with a cap-token",
             lambda now: _created(fleet, "cell-b", "umbrella-3", "umbrella", 2048, now))
    fleet.at((t + w + 4) * US, "create without a cap-token (refused)",
             lambda now: _refused(fleet, "cell-a", "acme-x", "acme", now))
    # Cut off for up to three buckets, back before the end so the late deltas are rolled while the fleet runs.
    cut, back = (t + w + 1) * US, (t + min(4, run.live_buckets - 1) * w + 1) * US
    fleet.at(cut, "cell-b forwarder cut off", lambda _: setattr(fleet.cells["cell-b"].transport, "cut", True))
    fleet.at(back, "cell-b backlog delivered late", lambda _: _restore(fleet, "cell-b"))
    wayne = next(o for o in ORGS if o.org_id == "wayne")
    plan_change(run, fleet, wayne, t + 2 * w, "free", lambda: cancel(run, "wayne"))
    fleet.at((t + 3 * w + 5) * US, "resize globex-1 4096", lambda now: fleet.resize("cell-b", "globex-1", 4096, now))
    fleet.at((t + 3 * w + 6) * US, "stop acme-1", lambda now: fleet.stop_sandbox("cell-a", "acme-1", now))
    fleet.at(end * US, "stop every sandbox", fleet.stop_all)  # at the time it runs, which may be after `end`


def _restore(fleet: SeamLoop, cell_id: str) -> None:
    cell = fleet.cells[cell_id]
    cell.transport.cut = False
    fleet.flush(cell_id)
    cell.recheck(cell.cut_windows)


def next_boundary(at: float, bucket: int) -> int:
    return int(-(-at // bucket) * bucket)


# --- the cutover, step by step ------------------------------------------------------------------------------

def preflight_until_clean(run: Run, ui: Ui, b0: int) -> None:
    code, body = cutover_cli(run, "preflight", "--soak-seconds", str(run.soak_buckets * run.bucket))
    why = [c["why"] for c in body.get("checks", []) if not c.get("ok")]
    ui.say(f"cutover preflight -> exit {code}: {why[0] if why else 'passed'}")
    if code == 0:
        run.problems.append("preflight passed before the soak was long enough")
    ui.wait_until(b0 + (run.soak_buckets + 1) * run.bucket + run.grace + 1, "shadow soak")
    for _ in range(6):
        code, body = cutover_cli(run, "preflight", "--soak-seconds", str(run.soak_buckets * run.bucket))
        if code == 0:
            ui.say(f"cutover preflight -> exit 0: {len(body['checks'])} checks pass")
            return
        ui.wait_until(time.time() + run.bucket / 2, "shadow soak")
    raise RuntimeError(f"preflight never passed: {body}")


def drain_and_arm(run: Run, ui: Ui, fleet: SeamLoop) -> None:
    code, body = cutover_cli(run, "plan", "--lead", str(2 * run.bucket))
    if code != 0:
        raise RuntimeError(f"plan failed: {body}")
    run.t = int(body["T"])
    ui.say(f"cutover plan -> T = {run.t} ({run.t - time.time():.0f} s from now)")
    ui.wait_until(run.t + CELL_SETTLE_SECONDS + 0.5, "draining the cells to T")
    for _ in range(20):
        code, body = cutover_cli(run, "drain-check", "--at", str(run.t))
        if code == 0:
            break
        ui.wait_until(time.time() + 0.5, "draining the cells to T")
    else:
        raise RuntimeError(f"the cells never drained to T: {body}")
    ui.say(f"cutover drain-check --at {run.t} -> exit 0: every cell billed through T, nothing pending")
    # Locally the cells stand down before the arm: restarting `chalice local` takes longer than one 10 s bucket,
    # and a cell still billing when bucket T settles bills it twice. The order is safe: the edge bills every
    # bucket from BILL_FROM=T, promoting the rows it rolled in shadow before the arm (on AWS, with 1 h buckets,
    # the seed's order, arm then switch, has an hour's room).
    fleet.switch_requested.set()
    if not fleet.switched.wait(60):
        raise RuntimeError("the cells did not switch to PRO_BILLING_AUTHORITY=edge")
    ui.say(f"cells restarted with PRO_BILLING_AUTHORITY=edge at T+{time.time() - run.t:.1f} s "
           "(billers stopped, creates need cap-tokens)")
    with fleet.deploying:  # never restart the app under a running rollup (see SeamLoop.deploying)
        code, body = cutover_cli(run, "arm", "--at", str(run.t))
    if code != 0:
        raise RuntimeError(f"arm failed: {body}")
    ui.say(f"cutover arm --at {run.t} -> exit 0 at T+{time.time() - run.t:.1f} s (SHADOW=false, BILL_FROM=T; "
           "local app restarted)")


def lagging(code: int, body: dict[str, Any]) -> bool:
    """Too early (exit 3), or failing only because meter events from T are not sent yet: on a busy machine the
    edge's scheduled runs send later than on a quiet one, and the schedule keeps running them."""
    failing = [c for c in body.get("checks", []) if not c.get("ok")]
    return code == 3 or (bool(failing) and all(c.get("check") == "flowing" and "pending" in str(c.get("why"))
                                               for c in failing))


def verify(run: Run, ui: Ui, label: str, patience_s: float = 90.0) -> None:
    deadline = time.time() + patience_s
    while True:
        code, body = cutover_cli(run, "verify", "--run-every", str(run.bucket))
        if not lagging(code, body) or time.time() > deadline:
            break
        ui.wait_until(time.time() + 2, label)
    why = [c["why"] for c in body.get("checks", []) if not c.get("ok")]
    ui.say(f"cutover verify -> exit {code}{': ' + '; '.join(why) if why else ': seam billed exactly once'}")
    if code != 0:
        run.problems.append(f"verify exit {code}: {why}")


def scenario(run: Run, ui: Ui, fleet: SeamLoop, b0: int, after_arm: Callable[[], None] | None = None) -> int:
    """Walk the seed's sequence; returns the end of the fleet's usage (a boundary)."""
    # The first preflight comes as the fleet starts: the cells have reported for less than the soak.
    ui.wait_until(b0 + 1, "shadow soak")
    preflight_until_clean(run, ui, b0)
    drain_and_arm(run, ui, fleet)
    end = run.t + run.live_buckets * run.bucket
    schedule_live(run, fleet, end)
    if after_arm is not None:
        after_arm()
    ui.wait_until(run.t + run.bucket + run.grace + 2, "edge live")
    verify(run, ui, "edge live")
    # The last bucket rolled and sent, and one more scheduled run: any late delta rolled since is sent too.
    ui.wait_until(end + run.bucket + run.grace + 2, "final rollup")
    if not fleet.rollup_idle(end + run.bucket):
        run.problems.append("the rollup's workers did not roll every bucket through the end within 60 s")
    verify(run, ui, "final verify")
    return end
