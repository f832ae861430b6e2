"""`make run`: the local stack, a fleet of cells ticking in real time, a rollup, and the reconciliation.

1. start the stack (moto server, Stripe emulator, `chalice local --stage local`);
2. publish the price catalog with `ensure-products`, create Stripe customers, register the
   orgs through `PUT /internal/orgs`, and upgrade one through a signed Stripe webhook;
3. tick for SIM_SECONDS (10 s buckets on the local stage), with forwarder re-sends,
   a poison envelope and a tick for an org the edge does not know;
4. run a rollup mid-way, then deliver a batch a cut-off cell held back (stragglers);
5. wait for the last bucket to close, `POST /run`, and compare what Stripe received
   and what `/internal/usage-parity` reports with the fleet's own ledger.
Exit code 0 only when every amount matches to the micro-unit.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import stripe
import typer
from rich.console import Console
from rich.table import Table

from sim import stack
from sim.api import EdgeClient, get_json, post_webhook
from sim.fleet import MICRO, OrgSpec, SandboxFleet, compare, invalid_envelope

console = Console(width=None if sys.stdout.isatty() else 120)
ORGS = [
    OrgSpec("acme", "legacy", "pro"),
    OrgSpec("globex", "legacy", "pro"),
    OrgSpec("initech", "unified", "pro"),
    OrgSpec("umbrella", "unified", "pro"),
    OrgSpec("hooli", "legacy", "free"),
    OrgSpec("stark", "unified", "free"),
]
# Registered free, then upgraded through POST /webhooks/stripe before the fleet starts.
UPGRADING = {"stark"}


@dataclass
class Report:
    ingest: dict[str, int] = field(default_factory=lambda: {"batches": 0, "accepted": 0, "samples": 0,
                                                            "late": 0, "quarantined": 0})
    runs: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def publish_catalog(info: stack.StackInfo) -> None:
    """The operator step of a deploy: `python -m chalicelib.cli ensure-products` against the stack."""
    done = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "ensure-products"],
        env=os.environ | info.cli_env(), capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"ensure-products failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    console.print(done.stdout.strip().splitlines()[0] + " in Stripe; catalog published")


def create_customers(info: stack.StackInfo, orgs: list[OrgSpec]) -> list[OrgSpec]:
    """A Stripe customer for every org that is pro or is about to upgrade."""
    client = stripe.StripeClient(info.stripe_api_key, base_addresses={"api": info.stripe_url})
    out = []
    for org in orgs:
        customer = None
        if org.plan == "pro" or org.org_id in UPGRADING:
            customer = client.v1.customers.create({"metadata": {"org_id": org.org_id}}).id
        out.append(OrgSpec(org.org_id, org.billing_mode, org.plan, customer))
    return out


def upgrade(info: stack.StackInfo, org: OrgSpec) -> OrgSpec:
    """A completed setup checkout, as Stripe would deliver it: the edge provisions and marks pro."""
    event = {
        "id": f"evt_sim_{org.org_id}_{int(time.time())}", "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {"id": f"cs_sim_{org.org_id}", "object": "checkout.session", "mode": "setup",
                            "customer": org.customer, "metadata": {"type": "setup", "org_id": org.org_id}}},
    }
    answer = post_webhook(info.api_url, info.webhook_secret, event)
    if answer.status != 200 or answer.body.get("action") != "provisioned":
        raise SystemExit(f"webhook upgrade of {org.org_id} failed: {answer.status} {answer.body}")
    console.print(f"{org.org_id} upgraded by webhook: subscription {answer.body['subscription']} with "
                  f"{answer.body['items']} prices, credit {answer.body['credit']}")
    return OrgSpec(org.org_id, org.billing_mode, "pro", org.customer)


def register(edge: EdgeClient, orgs: list[OrgSpec]) -> None:
    for org in orgs:
        body: dict[str, Any] = {"billing_mode": org.billing_mode, "plan": org.plan}
        if org.customer:
            body["stripe_customer_id"] = org.customer
        answer = edge.post(f"/internal/orgs/{org.org_id}", body, method="PUT")
        if answer.status != 200:
            raise SystemExit(f"registering {org.org_id} failed: {answer.status} {answer.body}")


def send(edge: EdgeClient, batch: list[dict[str, Any]], report: Report) -> None:
    for attempt in range(5):
        answer = edge.post("/ingest", batch)
        if answer.status == 202:
            break
        if answer.status != 503:
            raise SystemExit(f"/ingest answered {answer.status}: {answer.body}")
        time.sleep(0.5 * (attempt + 1))  # the forwarder keeps the batch and retries a 503
    else:
        raise SystemExit("/ingest kept answering 503")
    report.ingest["batches"] += 1
    for key in ("accepted", "samples", "late"):
        report.ingest[key] += int(answer.body.get(key, 0))
    report.ingest["quarantined"] += len(answer.body.get("quarantined", []))


def rollup(edge: EdgeClient, report: Report, until_rolled: bool = False) -> None:
    """POST /run; `until_rolled`: again while its buckets wait for the workers (the poller drains the
    tasks a run enqueues; the run after it finds them rolled and sends their rows)."""
    for _ in range(120):
        answer = edge.post("/run", {})
        if answer.status != 200:
            raise SystemExit(f"/run answered {answer.status}: {answer.body}")
        report.runs.append(answer.body)
        roll, late = answer.body["roll"], answer.body["roll"].get("late") or {}
        # Buckets or late slots with the workers, or a late slot still filling: its stragglers are not billed yet.
        if not until_rolled or not (roll.get("waiting") or late.get("waiting") or late.get("open")):
            return
        time.sleep(0.5)
    raise SystemExit(f"buckets or late slots never billed: {answer.body['roll']}")


def sends_settled(edge: EdgeClient, report: Report, patience_s: float = 60.0) -> None:
    """With the send fanned out (SEND_QUEUE_URL), a run only enqueues: /run again until it finds no pending
    row left to offer, i.e. the send workers (sim/rollup_poller.py send) sent every row."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        send = report.runs[-1].get("send") or {}
        if "tasks" not in send or send["rows"] == 0:
            return
        time.sleep(1.0)
        rollup(edge, report)
    raise SystemExit(f"meter events still pending after {patience_s:.0f} s: {report.runs[-1].get('send')}")


def drive(edge: EdgeClient, fleet: SandboxFleet, seconds: int, bucket: int, grace: int, report: Report) -> None:
    """Tick every second; re-send part of each batch; hold one batch back until its bucket was rolled."""
    started = time.time()
    held: list[dict[str, Any]] = []
    release_at = math.inf
    previous: list[dict[str, Any]] = []
    n = 0
    while time.time() - started < seconds:
        time.sleep(1.0)
        n += 1
        now = Decimal(time.time()).quantize(MICRO)
        batch = fleet.ticks_until(now)
        if n == 2:
            # A cell cut off from the edge: this batch arrives after a rollup closed its bucket.
            held, batch = batch, []
            release_at = math.ceil(now / bucket) * bucket + grace + 1
        extra = previous[: len(previous) // 3]  # the forwarder is at-least-once
        if n == 3 and batch:
            extra.append(invalid_envelope(edge.cell_id))
            extra.append({**batch[0], "id": f"{edge.cell_id}-unknown-org", "org_id": "not-registered"})
        if batch or extra:
            send(edge, batch + extra, report)
        previous = batch
        if held and time.time() > release_at:
            rollup(edge, report)
            send(edge, held, report)
            held = []
    if held:
        rollup(edge, report)
        send(edge, held, report)


def stripe_totals(info: stack.StackInfo) -> dict[tuple[str, str], Decimal]:
    totals = get_json(info.stripe_url + "/_emulator/totals")["totals"]
    return {(c, m): Decimal(v) for c, meters in totals.items() for m, v in meters.items()}


def parity(edge: EdgeClient, start: int, end: int, step: int) -> dict[str, Decimal]:
    """GB-seconds per org over [start, end), asked in windows of at most `step` seconds (the route's bound)."""
    totals: dict[str, Decimal] = {}
    for lo in range(start, end, step):
        answer = edge.get("/internal/usage-parity", {"from": lo, "to": min(lo + step, end)})
        if answer.status != 200:
            raise SystemExit(f"/internal/usage-parity answered {answer.status}: {answer.body}")
        for row in answer.body["orgs"]:
            totals[row["org_id"]] = totals.get(row["org_id"], Decimal(0)) + Decimal(str(row["gb_seconds"]))
    return totals


def reconcile(edge: EdgeClient, info: stack.StackInfo, fleet: SandboxFleet, window: tuple[int, int],
              report: Report) -> None:
    billed = stripe_totals(info)
    env = info.cli_env()
    step = int(env["BUCKET_SECONDS"]) * int(env.get("MAX_PARITY_BUCKETS", "24"))
    parity_rows = parity(edge, *window, step)
    table = Table(title="what Stripe received vs the fleet's own ledger")
    for column in ("org", "customer", "meter", "ledger", "stripe", ""):
        table.add_column(column)
    org_of = {o.customer: o.org_id for o in fleet.orgs}
    wrong = {key for key, _, _ in compare(fleet.billed, billed)}
    for key in sorted(set(fleet.billed) | set(billed)):
        ok = key not in wrong
        table.add_row(org_of.get(key[0], "?"), key[0], key[1], str(fleet.billed.get(key, 0)), str(billed.get(key, 0)),
                      "[green]ok[/green]" if ok else "[red]MISMATCH[/red]")
    console.print(table)
    for key, want, got in compare(fleet.billed, billed):
        report.mismatches.append(f"stripe {key}: ledger {want}, billed {got}")
    for org, want, got in compare(fleet.gb_seconds, parity_rows):
        report.mismatches.append(f"parity {org}: ledger {want} GB-s, edge {got} GB-s")
    console.print(f"parity [{window[0]}, {window[1]}): {len(parity_rows)} pro org(s), "
                  f"{'all equal' if not any(m.startswith('parity') for m in report.mismatches) else 'DIFFER'}")


def simulate(info: stack.StackInfo, seconds: int) -> Report:
    settings_env = info.cli_env()
    bucket = int(settings_env["BUCKET_SECONDS"])
    grace = int(settings_env["GRACE_SECONDS"])
    edge = EdgeClient(info.api_url, info.event_secret)
    publish_catalog(info)
    orgs = create_customers(info, ORGS)
    register(edge, orgs)
    orgs = [upgrade(info, o) if o.org_id in UPGRADING else o for o in orgs]
    report = Report()
    start = Decimal(time.time()).quantize(MICRO)
    fleet = SandboxFleet(orgs, start, period=1, sandboxes_per_org=2, cell_id=edge.cell_id, seed=int(start))
    console.print(f"ticking {len(fleet.sandboxes)} sandboxes of {len(orgs)} orgs for {seconds} s "
                  f"({bucket} s buckets, {grace} s grace) ...")
    drive(edge, fleet, seconds, bucket, grace, report)
    last_end = math.ceil(max(fleet.cursor.values()) / bucket) * bucket
    wait = last_end + grace + 1 - time.time()
    if wait > 0:
        console.print(f"waiting {wait:.0f} s for the last bucket to close ...")
        time.sleep(wait)
    rollup(edge, report, until_rolled=True)
    sends_settled(edge, report)
    console.print({"ingest": report.ingest, "final_run": report.runs[-1]})
    console.print(f"stragglers: {report.ingest['late']} sample(s) arrived after their bucket was rolled")
    reconcile(edge, info, fleet, (int(start) // bucket * bucket, last_end), report)
    return report


def main(
    seconds: int = typer.Option(int(os.environ.get("SIM_SECONDS", "30")), help="How long the fleet ticks"),
    keep: bool = typer.Option(False, help="Leave the stack running afterwards"),
) -> None:
    """Run the local stack and a simulated fleet; exit 1 if anything was billed wrong."""
    already = stack.running()
    console.print("starting the local stack ..." if already is None else "using the running local stack")
    try:
        info = stack.up()
    except stack.StackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        report = simulate(info, seconds)
    finally:
        if already is None and not keep:
            stack.down(quiet=True)
    if report.mismatches:
        for line in report.mismatches:
            console.print(f"[red]{line}[/red]")
        raise typer.Exit(1)
    console.print("[green]every pro tick billed exactly once; parity equals the ledger[/green]")


if __name__ == "__main__":
    typer.run(main)
