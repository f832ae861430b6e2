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

The cast (`cutover_orgs`), the Stripe set-up (`cutover_stripe`), the scenario and the operator's commands
(`cutover_scenario`), the display (`cutover_display`) and the report (`cutover_report`) are modules of their own.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from rich.progress import Progress

from cellkit.adapters.logs import JsonFormatter
from sim import stack
from sim.api import EdgeClient, get_json
from sim.browser import snapshot
from sim.cutover_display import COLUMNS, Ui, console
from sim.cutover_free import schedule_free, schedule_upgrade
from sim.cutover_orgs import ROOT, Run
from sim.cutover_report import build_report
from sim.cutover_scenario import make_cells, next_boundary, scenario, schedule_soak
from sim.cutover_stripe import setup_stripe_and_orgs
from sim.seam_fleet import SeamLoop
from sim.seam_report import RunReport, chart, summary, write_json

CONFIG = ROOT / ".chalice" / "config.json"
OUT = ROOT / "out"


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
    fleet = SeamLoop(cells, EdgeClient(run.info.api_url, run.info.event_secret, cell_id="scheduler"), run.bucket,
                  run.grace, logging.getLogger("sim.fleet"))
    b0 = next_boundary(time.time() + 3, run.bucket)
    schedule_soak(run, fleet, b0)
    free = schedule_free(run, fleet, b0)
    fleet.start(int(time.time()))
    total = 2 + run.soak_buckets + 4 + run.live_buckets + 1
    try:
        with Progress(*COLUMNS, console=console) as progress:
            task = progress.add_task("shadow soak", total=total, runs=0, reports=0, spool=0)
            ui = Ui(progress, task, b0, run.bucket, fleet)
            end = scenario(run, ui, fleet, b0,
                           after_arm=lambda: schedule_upgrade(run, fleet, free, run.t + 3 * run.bucket))
    finally:
        fleet.stop.set()
        fleet.join(30)
    if fleet.error is not None:
        raise RuntimeError(f"the fleet failed: {fleet.error!r}")
    run.problems += snapshot(run.info.api_url, out)  # the operator's page, seam and all: out/status-page.png
    report = build_report(run, fleet, edge, b0, end)
    report.events["free_tier"] = free.body(get_json(run.info.stripe_url + "/_emulator/meter_events")["events"])
    say_free(report.events["free_tier"])
    answers = report.costs["parity_answers"]
    console.print("cells' parity questions (answered / 503 + Retry-After while the fan-out settled): " + ", ".join(
        f"{c} {a['answered']}/{a['not_settled']}" for c, a in sorted(answers.items())))
    for cell in fleet.cells.values():
        cell.close()
    write_json(report, out / "cutover-report.json")
    chart(report, out / "cutover-chart.png")
    return report


def say_free(free: dict[str, object]) -> None:
    trail = free["balance_trail"]
    assert isinstance(trail, list)
    shown = ", ".join(f"{t['balance_cents']}" for t in trail if t.get("plan") == "free")
    console.print(f"free org {free['org_id']}: balance trail (cents, once a bucket) {shown}; halted in "
                  f"{sorted(free['halted_in_cells_us'])}; create refused: {free['refused_create']}; "  # type: ignore[call-overload]
                  f"upgraded at {free['upgraded_at']}, resumed in {sorted(free['resumed_in_cells_us'])}; "  # type: ignore[call-overload]
                  f"Stripe events before pro: {free['stripe_events_before_pro']}")


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
    console.print(f"report: {out / 'cutover-report.json'}  chart: {out / 'cutover-chart.png'}  status page: "
                  f"{out / 'status-page.png'}  ({took:.0f} s)")
    for line in run.problems:
        console.print(f"[red]{line}[/red]")
    if report.wrong or run.problems:
        console.print(f"[red]{len(report.wrong)} org/meter line(s) differ from the ground truth[/red]")
        raise typer.Exit(1)
    console.print("[green]every org and meter: Stripe = ground truth; cells billed before T, the edge from T, "
                  "nobody twice[/green]")


if __name__ == "__main__":
    typer.run(main)
