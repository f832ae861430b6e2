"""`edge-billing status` and `edge-billing meter-errors ...`: the operator's view in the terminal.

Thin: parse, call the services, print. `--json` prints exactly one JSON document on stdout, whatever
the outcome (an error is `{"error": ...}` with exit 2); log lines go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import stripe
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from chalicelib.adapters.stage_config import CONFIG, StageConfigError, read_stage
from chalicelib.bootstrap import Services, services
from chalicelib.observability import logger
from chalicelib.ports import StoreRejected, StoreUnavailable
from chalicelib.services import meter_errors
from chalicelib.services.status import status as gather
from chalicelib.settings import SettingsError, load_settings

console = Console(soft_wrap=True)
errors_app = typer.Typer(help="Stripe's meter error reports: list them, re-send once the cause is fixed.",
                         no_args_is_help=True)
StageOpt = typer.Option("dev", "--stage", help="Chalice stage in .chalice/config.json")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document only")
ConfigOpt = typer.Option(CONFIG, "--config", help="The Chalice config (source of truth for flags)", hidden=True)
# The flags that say what a stage bills and how: taken from the stage, whatever the shell exports.
STAGE_FLAGS = ("WORKER_ENV", "SHADOW", "BILL_FROM", "BUCKET_SECONDS", "GRACE_SECONDS", "LATE_MARGIN_SECONDS")
FAILURES = (SettingsError, StoreUnavailable, StoreRejected, StageConfigError, OSError, stripe.StripeError,
            BotoCoreError, ClientError)


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test runner swaps it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def logs_to_stderr() -> Iterator[None]:
    """stdout is the command's answer (a JSON document with --json): its log lines go to stderr."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(_Stderr())
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)


def fail(exc: BaseException, as_json: bool) -> NoReturn:
    message = f"Stripe answered {exc.http_status}: {exc.user_message or exc}" if isinstance(
        exc, stripe.StripeError) else str(exc)
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    else:
        console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def stage_services(config: Path, stage: str) -> Services:
    """The services with the stage's flags (CONTRACT 11: `status --stage S`), the rest from the environment."""
    flags = read_stage(config.read_text(), stage)
    base = services()
    prefix = flags.value("TABLE_PREFIX")
    if prefix and prefix != base.settings.TABLE_PREFIX:
        raise StageConfigError(f"the environment points at tables {base.settings.TABLE_PREFIX}-* but stage {stage} "
                               f"uses {prefix}-*: export that stage's TABLE_PREFIX (and its endpoints)")
    env = dict(os.environ) | {k: flags.env[k] for k in STAGE_FLAGS if k in flags.env}
    return replace(base, settings=load_settings(env))


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


def status(stage: str = StageOpt, as_json: bool = JsonOpt, config: Path = ConfigOpt) -> None:
    """What the stage holds: cells, parity, the seam, rollup lag, outbox, quarantine, meter errors, free tier."""
    try:
        svc = stage_services(config, stage)
        with logs_to_stderr():
            body = gather(svc, svc.meter_errors(), svc.free())
    except FAILURES as exc:
        fail(exc, as_json)
    if as_json:
        sys.stdout.write(json.dumps(body, default=str) + "\n")
    else:
        print_status(body)


@errors_app.command("list")
def errors_list(as_json: bool = JsonOpt) -> None:
    """The meter error reports received, newest first, and the rows each marked not billed."""
    try:
        reports = [r.body() for r in services().meter_errors().meter_error_reports(limit=1000)]
    except FAILURES as exc:
        fail(exc, as_json)
    if as_json:
        sys.stdout.write(json.dumps({"reports": reports}) + "\n")
        return
    table = Table("received", "event", "errors", "summary", "marked")
    for r in reports:
        table.add_row(str(r["received_at"]), r["event_id"], str(r["error_count"]), r["summary"], ", ".join(r["marked"]))
    console.print(table)


@errors_app.command("resend")
def errors_resend(report: str = typer.Option(None, "--report", help="Only this report's rows (its event id)"),
                  as_json: bool = JsonOpt) -> None:
    """Once the cause is fixed: re-send every row a report marked not billed (new identifier; run twice, sent once).
    The next rollup run sends them."""
    try:
        svc = services()
        with logs_to_stderr():
            done = meter_errors.resend(svc.store, svc.meter_errors(), svc.now(), report)
    except FAILURES as exc:
        fail(exc, as_json)
    if as_json:
        sys.stdout.write(json.dumps(done) + "\n")
        return
    for r in done["resent"]:
        console.print(f"{r['identifier']} -> {r['as']} (report {r['report']})")
    console.print(f"{len(done['resent'])} row(s) queued again from {len(done['reports'])} report(s); "
                  "the next rollup run sends them")


def register(app: Any) -> None:
    app.command("status")(status)
    app.add_typer(errors_app, name="meter-errors")
