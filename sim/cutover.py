"""`make run`: a whole cutover from the cells to the edge, locally, and the proof that the seam is right.

1. the local stack (moto, the Stripe emulator, `chalice local --stage local` in SHADOW for the soak),
   the catalog (`ensure-products`), the edge's webhook endpoint, customers and orgs;
2. two cells built on the cell kit (each its own SQLite database) bill pro usage themselves to the
   emulator while the edge computes in shadow; both post a parity report every bucket;
3. `cutover preflight` fails (the soak is too short: it says so), later passes; `cutover plan` picks
   T; the cells drain to T (`cutover drain-check`); `cutover arm --at T`; the cells restart with
   PRO_BILLING_AUTHORITY=edge (billers stop, creates need cap-tokens); the fleet keeps running;
   `cutover verify`;
4. an org upgrades through the signed webhook during the soak, another downgrades after T, and one
   cell's forwarder is cut off after T and delivers its backlog late;
5. per org and meter: ground truth (from the sandboxes' running time), what the cells billed before
   T, the edge from T, the emulator's totals: every difference must be zero (exit 1 otherwise).
`.chalice/config.json` (which `arm` edits) is restored afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import stripe
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cellkit.adapters.logs import JsonFormatter
from cellkit.core.usage import OrgRow
from sim import stack
from sim.api import EdgeClient, get_json, post_webhook
from sim.cells import CellConfig, SimCell
from sim.seam_fleet import Fleet
from sim.seam_report import BucketRow, RunReport, cell_gb_per_window, chart, drift_rows, summary, write_json
from sim.truth import (
    MeterEvent,
    PlanChange,
    attribute,
    billers_per_bucket,
    gb_us_per_bucket,
    mb_us_to_gb_s,
    owed,
    seam_lines,
)

ROOT = stack.ROOT
CONFIG = ROOT / ".chalice" / "config.json"
OUT = ROOT / "out"
US = 1_000_000
CELL_SETTLE_SECONDS = 2  # the seed's drain: the allocator settles a bucket soon after it closes

console = Console(width=None if sys.stdout.isatty() else 130)
log = logging.getLogger("sim.cutover")


@dataclass(frozen=True)
class OrgSpec:
    org_id: str
    cell_id: str
    mode: str
    plan: str
    by_webhook: bool = False  # provisioned through a signed checkout (it then has a subscription)


ORGS = (
    OrgSpec("acme", "cell-a", "legacy", "pro"),
    OrgSpec("initech", "cell-a", "unified", "pro"),
    OrgSpec("hooli", "cell-a", "legacy", "free"),
    OrgSpec("wayne", "cell-a", "unified", "pro", by_webhook=True),  # downgrades after T
    OrgSpec("globex", "cell-b", "legacy", "pro"),
    OrgSpec("umbrella", "cell-b", "unified", "pro"),
    OrgSpec("stark", "cell-b", "unified", "free"),  # upgrades through the webhook during the soak
)
# (bucket index from the fleet's start, seconds into it, cell, sandbox, org, MB); 2048 MB has no tier.
STARTS = (
    (0, 0.0, "cell-a", "acme-1", "acme", 1024), (0, 0.4, "cell-a", "acme-2", "acme", 4096),
    (0, 0.8, "cell-a", "initech-1", "initech", 2048), (0, 1.2, "cell-a", "initech-2", "initech", 8192),
    (0, 1.6, "cell-a", "hooli-1", "hooli", 1024), (0, 2.0, "cell-a", "wayne-1", "wayne", 2048),
    (0, 2.4, "cell-b", "globex-1", "globex", 8192), (0, 2.8, "cell-b", "umbrella-1", "umbrella", 2048),
    (0, 3.2, "cell-b", "stark-1", "stark", 1024), (1, 3.7, "cell-b", "umbrella-2", "umbrella", 4096),
    (2, 6.1, "cell-b", "globex-2", "globex", 16384),
)
RESIZES = ((1, 3.3, "cell-a", "acme-2", 8192), (2, 5.5, "cell-b", "umbrella-1", 4096),
           (4, 7.9, "cell-a", "initech-2", 2048))
STOPS = ((3, 4.4, "cell-a", "initech-1"), (4, 2.7, "cell-b", "umbrella-2"))


@dataclass
class Run:
    info: stack.StackInfo
    bucket: int
    grace: int
    soak_buckets: int
    live_buckets: int
    customers: dict[str, str] = field(default_factory=dict)  # org -> Stripe customer
    subscriptions: dict[str, str] = field(default_factory=dict)
    cli: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    t: int = 0


# --- the operator ------------------------------------------------------------------------------------

def cutover_cli(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    """`python -m chalicelib.cli cutover ... --stage local --json`, exactly as an operator runs it."""
    argv = [sys.executable, "-m", "chalicelib.cli", "cutover", *args, "--stage", "local", "--json"]
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


def publish_catalog(run: Run) -> None:
    done = subprocess.run([sys.executable, "-m", "chalicelib.cli", "ensure-products"], cwd=ROOT,
                          env=os.environ | run.info.cli_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"ensure-products failed ({done.returncode}):\n{done.stdout}{done.stderr}")


# Made by hand in the Stripe dashboard (ensure-products discovers them, never creates them): lookup key -> meter.
DASHBOARD_PRICES = {"sandbox_compute_overage": "sandbox_compute_sandbox_overage",
                    "sandbox_compute_reserved": "sandbox_compute_sandbox_reserved"}


def dashboard_prices(client: stripe.StripeClient) -> None:
    """The operator's manual step before the catalog can be complete: the overage and reserved prices."""
    meters = {m.event_name: m.id for m in client.v1.billing.meters.list({"limit": 100}).data}
    client.v1.products.create({"id": "prod_dashboard", "name": "made by hand"})
    for key, meter in DASHBOARD_PRICES.items():
        recurring: Any = {"interval": "month", "usage_type": "metered", "meter": meters[meter]}
        client.v1.prices.create({"product": "prod_dashboard", "currency": "usd",
                                 "unit_amount_decimal": Decimal("0.0004"), "lookup_key": key, "recurring": recurring})


def stripe_client(info: stack.StackInfo) -> stripe.StripeClient:
    return stripe.StripeClient(info.stripe_api_key, base_addresses={"api": info.stripe_url})


def setup_stripe_and_orgs(run: Run, edge: EdgeClient) -> None:
    """The deploy's operator steps: catalog, the one webhook endpoint, customers, org records."""
    client = stripe_client(run.info)
    publish_catalog(run)  # meters and the managed prices; it lists the dashboard prices it lacks
    dashboard_prices(client)
    publish_catalog(run)  # now complete: the preflight's catalog check passes
    client.v1.webhook_endpoints.create({"url": run.info.api_url + "/webhooks/stripe", "enabled_events": [
        "checkout.session.completed", "customer.subscription.created", "customer.subscription.deleted"]})
    for org in ORGS:
        if org.plan == "pro" or org.org_id == "stark":
            run.customers[org.org_id] = client.v1.customers.create({"metadata": {"org_id": org.org_id}}).id
        body: dict[str, Any] = {"billing_mode": org.mode, "plan": "free" if org.by_webhook else org.plan}
        if org.org_id in run.customers:
            body["stripe_customer_id"] = run.customers[org.org_id]
        answer = edge.post(f"/internal/orgs/{org.org_id}", body, method="PUT")
        if answer.status != 200:
            raise SystemExit(f"registering {org.org_id} failed: {answer.status} {answer.body}")
        if org.by_webhook:
            run.subscriptions[org.org_id] = checkout(run, org.org_id)["subscription"]


def webhook(run: Run, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    event = {"id": f"evt_sim_{obj['id']}_{time.time_ns()}", "type": event_type, "created": now,
             "data": {"object": obj}}
    answer = post_webhook(run.info.api_url, run.info.webhook_secret, event)
    if answer.status != 200:
        raise RuntimeError(f"webhook {event_type} answered {answer.status}: {answer.body}")
    body: dict[str, Any] = answer.body
    return body


def checkout(run: Run, org_id: str) -> dict[str, Any]:
    body = webhook(run, "checkout.session.completed", {
        "id": f"cs_sim_{org_id}", "object": "checkout.session", "mode": "setup", "customer": run.customers[org_id],
        "metadata": {"type": "setup", "org_id": org_id}})
    if body.get("action") != "provisioned":
        raise RuntimeError(f"checkout of {org_id} did not provision: {body}")
    return body


def cancel(run: Run, org_id: str) -> dict[str, Any]:
    return webhook(run, "customer.subscription.deleted", {
        "id": run.subscriptions[org_id], "object": "subscription", "customer": run.customers[org_id],
        "status": "canceled"})


# --- the fleet's scenario ------------------------------------------------------------------------------

def make_cells(run: Run, log_: logging.Logger) -> dict[str, SimCell]:
    cells_dir = ROOT / ".local" / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    info = run.info
    cells = {}
    for cell_id in sorted({o.cell_id for o in ORGS}):
        cfg = CellConfig(cell_id, cells_dir / f"{cell_id}.db", info.api_url, info.event_secret, info.jwt_secret,
                         info.stripe_api_key, info.stripe_url, run.bucket, run.grace, CELL_SETTLE_SECONDS)
        cells[cell_id] = SimCell(cfg, log_)
    for org in ORGS:
        # The cell's own org row (its pre-cutover billing authority), as the control plane keeps it.
        cells[org.cell_id].put_org(OrgRow(org.org_id, org.plan, org.mode,  # type: ignore[arg-type]
                                          run.customers.get(org.org_id)))
    return cells


def plan_change(run: Run, fleet: Fleet, org: OrgSpec, boundary: int, plan: str,
                apply: Callable[[], object]) -> None:
    """A plan change that takes effect at a bucket boundary, on both sides of the wire.

    The edge classifies a tick by the org's plan when it arrives, the cell bills a whole bucket by its org row
    when it settles it. So: tick the cell exactly at the boundary, deliver its spool, then send the webhook
    (the edge: every later tick is `plan`); the cell's org row changes once it has settled and parity-checked
    the bucket before the boundary (its org row holds one plan, not a history)."""
    cell = fleet.cells[org.cell_id]

    def at_boundary(_: int) -> None:
        cell.tick_at(boundary * US)
        fleet.flush(org.cell_id)
        apply()
        fleet.ledger.changes.append(PlanChange(org.org_id, boundary * US, plan))

    def cell_row(_: int) -> None:
        cell.put_org(OrgRow(org.org_id, plan, org.mode, run.customers.get(org.org_id)))  # type: ignore[arg-type]

    fleet.at(boundary * US, f"{org.org_id} -> {plan} (webhook)", at_boundary)
    fleet.at((boundary + max(run.grace, CELL_SETTLE_SECONDS) + 1) * US + US // 2, f"{org.org_id} cell row -> {plan}",
             cell_row)


def schedule_soak(run: Run, fleet: Fleet, b0: int) -> None:
    w = run.bucket
    for k, off, cell_id, sbx, org, mb in STARTS:
        fleet.at(int((b0 + k * w + off) * US), f"start {sbx}", partial(_created, fleet, cell_id, sbx, org, mb))
    for k, off, cell_id, sbx, mb in RESIZES:
        fleet.at(int((b0 + k * w + off) * US), f"resize {sbx} {mb}", partial(_resized, fleet, cell_id, sbx, mb))
    for k, off, cell_id, sbx in STOPS:
        fleet.at(int((b0 + k * w + off) * US), f"stop {sbx}", partial(fleet.stop_sandbox, cell_id, sbx))
    stark = next(o for o in ORGS if o.org_id == "stark")
    plan_change(run, fleet, stark, b0 + 3 * w, "pro", lambda: checkout(run, "stark"))


def _resized(fleet: Fleet, cell_id: str, sandbox_id: str, memory_mb: int, now: int) -> None:
    fleet.resize(cell_id, sandbox_id, memory_mb, now)


def _created(fleet: Fleet, cell_id: str, sandbox_id: str, org_id: str, memory_mb: int, now: int) -> None:
    status = fleet.create(cell_id, sandbox_id, org_id, memory_mb, now)
    if status != 201:
        raise RuntimeError(f"create {sandbox_id} answered {status}: {fleet.refused[-1]}")


def _refused(fleet: Fleet, cell_id: str, sandbox_id: str, org_id: str, now: int) -> None:
    """In edge mode a create without a cap-token must be refused (401): recorded, and checked in the report."""
    fleet.create(cell_id, sandbox_id, org_id, 1024, now, with_token=False)


def schedule_live(run: Run, fleet: Fleet, end: int) -> None:
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
    fleet.at(end * US, "stop every sandbox", lambda _: fleet.stop_all(end * US))


def _restore(fleet: Fleet, cell_id: str) -> None:
    cell = fleet.cells[cell_id]
    cell.transport.cut = False
    fleet.flush(cell_id)
    cell.recheck(cell.cut_windows)


# --- waiting, with a progress bar ------------------------------------------------------------------------

@dataclass
class Ui:
    progress: Progress
    task: Any
    b0: int
    bucket: int
    fleet: Fleet

    def wait_until(self, at: float, phase: str) -> None:
        while time.time() < at:
            if self.fleet.error is not None:
                raise RuntimeError(f"the fleet failed: {self.fleet.error!r}") from self.fleet.error
            self.update(phase)
            time.sleep(0.2)
        self.update(phase)

    def update(self, phase: str) -> None:
        done = max(0.0, (time.time() - self.b0) / self.bucket)
        spool = sum(c.spool_depth() for c in self.fleet.cells.values())
        self.progress.update(self.task, completed=done, description=f"[bold]{phase}[/bold]",
                             runs=len(self.fleet.runs), spool=spool,
                             reports=sum(len(c.reports) for c in self.fleet.cells.values()))

    def say(self, text: str) -> None:
        self.progress.console.print(text)


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


def drain_and_arm(run: Run, ui: Ui, fleet: Fleet) -> None:
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
    with fleet.deploying:  # never restart the app under a running rollup (see Fleet.deploying)
        code, body = cutover_cli(run, "arm", "--at", str(run.t))
    if code != 0:
        raise RuntimeError(f"arm failed: {body}")
    ui.say(f"cutover arm --at {run.t} -> exit 0 at T+{time.time() - run.t:.1f} s (SHADOW=false, BILL_FROM=T; "
           "local app restarted)")


def verify(run: Run, ui: Ui, label: str) -> None:
    for _ in range(10):
        code, body = cutover_cli(run, "verify", "--run-every", str(run.bucket))
        if code != 3:
            break
        ui.wait_until(time.time() + 2, label)
    why = [c["why"] for c in body.get("checks", []) if not c.get("ok")]
    ui.say(f"cutover verify -> exit {code}{': ' + '; '.join(why) if why else ': seam billed exactly once'}")
    if code != 0:
        run.problems.append(f"verify exit {code}: {why}")


def scenario(run: Run, ui: Ui, fleet: Fleet, b0: int) -> int:
    """Walk the seed's sequence; returns the end of the fleet's usage (a boundary)."""
    # The first preflight comes as the fleet starts: the cells have reported for less than the soak.
    ui.wait_until(b0 + 1, "shadow soak")
    preflight_until_clean(run, ui, b0)
    drain_and_arm(run, ui, fleet)
    end = run.t + run.live_buckets * run.bucket
    schedule_live(run, fleet, end)
    ui.wait_until(run.t + run.bucket + run.grace + 2, "edge live")
    verify(run, ui, "edge live")
    # The last bucket rolled and sent, and one more scheduled run: any late delta rolled since is sent too.
    ui.wait_until(end + run.bucket + run.grace + 2, "final rollup")
    verify(run, ui, "final verify")
    return end


# --- the report ------------------------------------------------------------------------------------------------

def edge_gb_per_bucket(edge: EdgeClient, buckets: list[int], width: int) -> dict[int, Decimal]:
    out = {}
    for b in buckets:
        answer = edge.get("/internal/usage-parity", {"from": b, "to": b + width})
        out[b] = sum((Decimal(str(r["gb_seconds"])) for r in answer.body["orgs"]), Decimal(0))
    return out


def build_report(run: Run, fleet: Fleet, edge: EdgeClient, b0: int, end: int) -> RunReport:
    info, w = run.info, run.bucket
    events = [MeterEvent(e["identifier"], e["event_name"], e["customer"], Decimal(e["value"]), e["cancelled"])
              for e in get_json(info.stripe_url + "/_emulator/meter_events")["events"]]
    attributed = [attribute(e) for e in events if not e.cancelled]
    org_of = {c: o for o, c in run.customers.items()}
    totals = get_json(info.stripe_url + "/_emulator/totals")["totals"]
    stripe_sums = {(org_of[c], m): Decimal(v) for c, ms in totals.items() for m, v in ms.items()}
    modes = {o.org_id: o.mode for o in ORGS}
    initial = [PlanChange(o.org_id, 0, "free" if o.org_id == "stark" else o.plan) for o in ORGS]
    changes = initial + fleet.ledger.changes
    truth = owed(fleet.ledger.segments, changes, modes, end * US)  # type: ignore[arg-type]
    buckets = list(range(b0 - w, end + w, w))
    truth_gb = gb_us_per_bucket(fleet.ledger.segments, changes, w, end * US)
    edge_gb = edge_gb_per_bucket(edge, buckets, w)
    reports = {c.cell_id: c.reports for c in fleet.cells.values()}
    cell_gb = cell_gb_per_window(reports)
    billed = billers_per_bucket(attributed)
    rows = [BucketRow(b, mb_us_to_gb_s(truth_gb.get(b, 0)), edge_gb[b], cell_gb.get(b, Decimal(0)),
                      billed.get(b, [])) for b in buckets]
    requests = get_json(info.stripe_url + "/_emulator/requests")["requests"]
    costs = {"stripe_requests": requests,
             "meter_events": {"cells": sum(a.side != "edge" for a in attributed),
                              "edge": sum(a.side == "edge" and not a.late for a in attributed),
                              "edge_late_deltas": sum(a.late for a in attributed)},
             "rollup_runs": len(fleet.runs),
             "forwarder": {c.cell_id: vars(c.cell.forwarder.stats) for c in fleet.cells.values() if c.cell.forwarder},
             "dynamodb_units": "not measured here (bench/rollup counts them per tick with the capacity accountant)"}
    report = RunReport(run.t, w, seam_lines(truth, attributed, stripe_sums, run.t), rows, drift_rows(reports),
                       run.cli, costs, {"actions": fleet.done, "refused_creates": fleet.refused,
                                        "problems": run.problems})
    return report


# --- main ------------------------------------------------------------------------------------------------------

def configure_logs(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(JsonFormatter())
    for name in ("cellkit", "sim"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def shadow_config(original: str) -> str:
    """The local stage ships live (SHADOW=false); the soak runs it in shadow from BILL_FROM=0."""
    config = json.loads(original)
    config["stages"]["local"]["environment_variables"] |= {"SHADOW": "true", "BILL_FROM": "0"}
    return json.dumps(config, indent=2) + "\n"


def execute(run: Run, out: Path) -> RunReport:
    edge = EdgeClient(run.info.api_url, run.info.event_secret, cell_id="operator")
    setup_stripe_and_orgs(run, edge)
    cells = make_cells(run, logging.getLogger("cellkit"))
    fleet = Fleet(cells, EdgeClient(run.info.api_url, run.info.event_secret, cell_id="scheduler"), run.bucket,
                  run.grace, logging.getLogger("sim.fleet"))
    b0 = next_boundary(time.time() + 3, run.bucket)
    schedule_soak(run, fleet, b0)
    fleet.start(int(time.time()))
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("bucket {task.completed:.0f}/{task.total}"),
               TextColumn("rollups {task.fields[runs]}  reports {task.fields[reports]}  spool {task.fields[spool]}"),
               TimeElapsedColumn())
    total = 2 + run.soak_buckets + 4 + run.live_buckets + 1
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("shadow soak", total=total, runs=0, reports=0, spool=0)
            ui = Ui(progress, task, b0, run.bucket, fleet)
            end = scenario(run, ui, fleet, b0)
    finally:
        fleet.stop.set()
        fleet.join(30)
    if fleet.error is not None:
        raise RuntimeError(f"the fleet failed: {fleet.error!r}")
    report = build_report(run, fleet, edge, b0, end)
    for cell in fleet.cells.values():
        cell.close()
    write_json(report, out / "cutover-report.json")
    chart(report, out / "cutover-chart.png")
    return report


def main(
    soak_buckets: int = typer.Option(5, help="Buckets of clean parity the preflight requires"),
    live_buckets: int = typer.Option(6, help="Buckets the fleet runs after T"),
    out: Path = typer.Option(OUT, help="Where the report and the chart go"),
) -> None:
    """Run a whole cutover locally; exit 1 if any difference is not zero or a step went wrong."""
    configure_logs(out / "cutover-run.log")
    if stack.running() is not None:
        # The proof needs a fresh emulator and fresh tables: totals from an earlier run would not be zero-diff.
        console.print("[red]error:[/red] a local stack is running (make stack-down first): the cutover run starts "
                      "its own, fresh")
        raise typer.Exit(2)
    original = CONFIG.read_text()
    started = time.monotonic()
    CONFIG.write_text(shadow_config(original))
    try:
        console.print("starting the local stack (SHADOW=true for the soak) ...")
        info = stack.up()
        stage = info.cli_env()
        run = Run(info, int(stage["BUCKET_SECONDS"]), int(stage["GRACE_SECONDS"]), soak_buckets, live_buckets)
        report = execute(run, out)
    except stack.StackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    finally:
        CONFIG.write_text(original)  # `arm` wrote BILL_FROM/SHADOW: the tracked file goes back as it was
        stack.down(quiet=True)
    summary(console, report)
    finish(report, run, out, time.monotonic() - started)


def finish(report: RunReport, run: Run, out: Path, took: float) -> None:
    console.print(f"report: {out / 'cutover-report.json'}  chart: {out / 'cutover-chart.png'}  ({took:.0f} s)")
    for line in run.problems:
        console.print(f"[red]{line}[/red]")
    if report.wrong or run.problems:
        console.print(f"[red]{len(report.wrong)} org/meter line(s) differ from the ground truth[/red]")
        raise typer.Exit(1)
    console.print("[green]every org and meter: Stripe = ground truth; cells billed before T, the edge from T, "
                  "nobody twice[/green]")


if __name__ == "__main__":
    typer.run(main)
