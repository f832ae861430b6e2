"""``python -m cellkit``: run a cell, check parity for a window, show or push the cell's status; the sandbox
and org commands are in cli_sandboxes, the set-aside envelopes' in cli_aside. docs/cell-kit.md lists them all,
with their exit codes."""

from __future__ import annotations

import signal
import threading
from decimal import Decimal
from typing import Annotated

import typer

from cellkit import cli_sandboxes
from cellkit.adapters.logs import configure, get_logger
from cellkit.bootstrap import run
from cellkit.cli_aside import aside_app
from cellkit.cli_billable import billable_app
from cellkit.cli_common import cell_or_exit, fail, print_json, settings_or_exit
from cellkit.cli_halts import register as register_halts
from cellkit.services.parity import ParityError
from cellkit.services.status import StatusError, push_status

app = typer.Typer(help="The cell kit: ticks, forwarding, the cell's own billing and parity (CONTRACT section 8).",
                  no_args_is_help=True)
app.add_typer(aside_app, name="aside")
app.add_typer(billable_app, name="billable")
cli_sandboxes.register(app)
register_halts(app)


@app.command("run")
def run_cmd(
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: until SIGTERM).")]
    = None,
) -> None:
    """Run the cell: ticker, forwarder, billers (unless PRO_BILLING_AUTHORITY=edge), parity, status.

    Settings come from the environment: CELL_ID, WORKER_ID, CELL_DATABASE_URL (sqlite://PATH or
    postgresql://...), EDGE_URL, EVENT_SECRET, PRO_BILLING_AUTHORITY, OPENSANDBOX_USAGE_PARITY_URL,
    STRIPE_API_KEY, STRIPE_API_BASE, TICK_SECONDS, ...
    """
    configure()
    settings = settings_or_exit()
    if not settings.edge_base:
        fail("EDGE_URL must be set to run a cell (the edge's base URL, e.g. https://api.example.com/api)")
    cell = cell_or_exit(settings, get_logger("cellkit"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if seconds is not None:
        threading.Timer(seconds, stop.set).start()
    run(cell, stop)


@app.command("parity-check")
def parity_check(
    from_: Annotated[
        int | None, typer.Option("--from", help="Window start, unix seconds (default: the last settled hour).")
    ] = None,
    to: Annotated[int | None, typer.Option("--to", help="Window end, unix seconds.")] = None,
    post: Annotated[bool, typer.Option(help="Post the report to the edge's /internal/parity-reports.")] = True,
    tolerance: Annotated[
        Decimal | None, typer.Option(help="Drift above this fraction is flagged (default PARITY_TOLERANCE, 0.02).")
    ] = None,
) -> None:
    """Compare the cell's GB-seconds per pro org with the edge's for one window; print (and post) the report."""
    configure("WARNING")
    if (from_ is None) != (to is None) or (from_ is not None and to is not None and to <= from_):
        fail("--from and --to go together, with --to > --from")
    cell = cell_or_exit(settings_or_exit(), get_logger("cellkit"), parity=True)
    if cell.parity is None:
        fail("EDGE_URL (or OPENSANDBOX_USAGE_PARITY_URL) must be set to check parity")
    if tolerance is not None:
        cell.parity.tolerance = tolerance
    try:
        report = cell.parity.check((from_, to) if from_ is not None and to is not None else None, post=post)
    except ParityError as exc:  # the edge unreachable, or an answer that is not the contract's
        fail(str(exc), 3)
    print_json(report.body())
    raise typer.Exit(0 if report.clean else 1)


@app.command("status")
def status_cmd(
    push: Annotated[bool, typer.Option(help="Also PUT it to the edge's /internal/cells/{cell_id}.")] = False,
) -> None:
    """Print the cell's status (authority, billers, billed_through, pending_billable, spool depth)."""
    configure("WARNING")
    settings = settings_or_exit()
    cell = cell_or_exit(settings, get_logger("cellkit"))
    body = cell.status(settings.authority == "cell")
    if push:
        if cell.edge is None:
            fail("EDGE_URL must be set to push the status")
        try:
            push_status(cell.edge, body)
        except StatusError as exc:
            fail(str(exc), 3)
    print_json({"cell_id": settings.CELL_ID} | body)


@app.command("conformance")
def conformance_cmd(
    seconds: Annotated[float, typer.Option(help="How long to listen (stops early once every answer was seen).")]
    = 60.0,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8787,
    secret: Annotated[str | None, typer.Option(help="EVENT_SECRET the cell signs with (default: the env).")] = None,
    linger: Annotated[float, typer.Option(help="Seconds to keep watching once every scripted answer was seen.")]
    = 3.0,
) -> None:
    """A fake edge to point a cell's forwarder at (EDGE_URL): checks signatures, envelopes, intervals that tile,
    ids, batch limits and the handling of 202/503/413/401/400; prints each violation in one line (docs/protocol.md).
    Exit 0 when the cell conforms, 1 otherwise."""
    import os
    import time

    from cellkit.adapters.conformance_edge import ConformanceEdge

    key = secret or os.environ.get("EVENT_SECRET")
    if not key:
        typer.echo("--secret or EVENT_SECRET is required", err=True)
        raise typer.Exit(2)
    edge = ConformanceEdge(key)
    url = edge.start(port)
    typer.echo(f"conformance edge listening on {url}: point the cell's EDGE_URL at it", err=True)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not edge.observer.complete:
            time.sleep(0.1)
        time.sleep(min(linger, max(0.0, deadline - time.monotonic())))
    finally:
        edge.stop()
    found = edge.violations()
    for v in found:
        typer.echo(v.line())
    typer.echo(f"{edge.observer.requests} ingest request(s), {len(found)} violation(s)", err=True)
    raise typer.Exit(1 if found else 0)
