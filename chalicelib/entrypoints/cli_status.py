"""`edge-billing status` and `edge-billing meter-errors ...`: the operator's view in the terminal.

Thin: parse, call the services, print. `--json` prints exactly one JSON document on stdout, whatever
the outcome (an error is `{"error": ...}` with exit 2); log lines go to stderr (cli_output.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from chalicelib.core.stage_config import CONFIG
from chalicelib.entrypoints.cli_output import answer, container, operator_errors, stage_services
from chalicelib.services import meter_errors
from chalicelib.services.status import status as gather

console = Console(soft_wrap=True)
errors_app = typer.Typer(help="Stripe's meter error reports: list them, re-send once the cause is fixed.",
                         no_args_is_help=True)
StageOpt = typer.Option("dev", "--stage", help="Chalice stage in .chalice/config.json")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document only")
ConfigOpt = typer.Option(CONFIG, "--config", help="The Chalice config (source of truth for flags)", hidden=True)
def print_status(body: dict[str, Any]) -> None:
    console.print(f"stage {body['stage']}: SHADOW={str(body['shadow']).lower()} BILL_FROM={body['bill_from']} "
                  f"buckets {body['bucket_seconds']} s, as of {body['as_of']}")
    cells = Table("cell", "authority", "billers", "billed_through", "pending", "spool", "age", "stale")
    for c in body["cells"]:
        cells.add_row(c["cell_id"], c["authority"], str(c["billers_running"]), str(c["billed_through"]),
                      str(c["pending_billable"]), str(c["spool_depth"]), f"{c['age_seconds']} s",
                      "STALE" if c["stale"] else "")
    console.print(cells)
    grid = Table("cell", "clean", "drifting", "missing")
    per: dict[str, list[int]] = {}
    for p in body["parity"]:
        counts = per.setdefault(p["cell_id"], [0, 0, 0])
        counts[2 if p.get("missing") else (0 if p["clean"] else 1)] += 1
    for cell, (clean, drift, missing) in sorted(per.items()):
        grid.add_row(cell, str(clean), str(drift), str(missing))
    console.print(grid)
    for v in body["seam"]:
        console.print(f"seam {v['bucket_start']}: {v['verdict']} (cells {', '.join(v['cells']) or '-'})")
    console.print(f"rollup {body['rollup']}  outbox {body['outbox']}  quarantine {body['quarantine']}")
    for r in body["meter_errors"]:
        console.print(f"meter error report {r['event_id']}: {r['summary']} (marked {', '.join(r['marked']) or '-'})")
    console.print(f"free {body['free']}")


@operator_errors
def status(ctx: typer.Context, stage: str = StageOpt, as_json: bool = JsonOpt, config: Path = ConfigOpt) -> None:
    """What the stage holds: cells, parity, the seam, rollup lag, outbox, quarantine, meter errors, free tier."""
    svc, _ = stage_services(ctx, config, stage)
    body = gather(svc, svc.meter_errors(), svc.free())
    if as_json:
        answer(body)
    else:
        print_status(body)


@errors_app.command("list")
@operator_errors
def errors_list(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """The meter error reports received, newest first, and the rows each marked not billed."""
    reports = [r.body() for r in container(ctx).meter_errors().meter_error_reports(limit=1000)]
    if as_json:
        answer({"reports": reports})
        return
    table = Table("received", "event", "errors", "summary", "marked")
    for r in reports:
        table.add_row(str(r["received_at"]), r["event_id"], str(r["error_count"]), r["summary"], ", ".join(r["marked"]))
    console.print(table)


@errors_app.command("resend")
@operator_errors
def errors_resend(ctx: typer.Context, report: str = typer.Option(None, "--report",
                  help="Only this report's rows (its event id)"),
                  as_json: bool = JsonOpt) -> None:
    """Once the cause is fixed: re-send every row a report marked not billed (new identifier; run twice, sent once).
    The next rollup run sends them."""
    svc = container(ctx)
    done = meter_errors.resend(svc.store, svc.meter_errors(), svc.now(), report)
    if as_json:
        answer(done)
        return
    for r in done["resent"]:
        console.print(f"{r['identifier']} -> {r['as']} (report {r['report']})")
    console.print(f"{len(done['resent'])} row(s) queued again from {len(done['reports'])} report(s); "
                  "the next rollup run sends them")


def register(app: Any) -> None:
    app.command("status")(status)
    app.add_typer(errors_app, name="meter-errors")
