"""``python -m cellkit halt-org | resume-org | reconcile-halts | serve-admin``: the free tier's halts
(CONTRACT section 10) by hand, from the edge's list, or served for the edge's pushes."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import typer

from cellkit.adapters.admin_http import serve
from cellkit.adapters.logs import configure, get_logger
from cellkit.bootstrap import Cell
from cellkit.cli_common import cell_or_exit, print_json, settings_or_exit
from cellkit.services.halts import HaltListUnavailable, pull_halted


def _cell() -> Cell:
    configure("WARNING")
    return cell_or_exit(settings_or_exit(), get_logger("cellkit"))


_print = print_json


def halt_org(org_id: Annotated[str, typer.Argument(help="The org to halt.")]) -> None:
    """Halt an org: stop its running sandboxes (reason credits_exhausted), refuse its creates and wakes."""
    _print(_cell().halts.halt(org_id).body())


def resume_org(org_id: Annotated[str, typer.Argument(help="The org to resume.")]) -> None:
    """Resume an org: wake exactly the sandboxes its halt stopped."""
    _print(_cell().halts.resume(org_id).body())


def reconcile_halts() -> None:
    """Pull the edge's halted list (GET /internal/halted-orgs) once and make the cell's halts match it."""
    cell = _cell()
    if cell.edge is None:
        typer.echo("EDGE_URL (and EVENT_SECRET) must be set", err=True)
        raise typer.Exit(2)
    try:
        _print(cell.halts.reconcile(pull_halted(cell.edge)))
    except HaltListUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def serve_admin(
    port: Annotated[int, typer.Option(help="Port for /admin/halt-org and /admin/resume-org.")] = 8081,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Serve the halt handler for the edge's signed pushes until stopped."""
    cell = _cell()
    server = serve(cell.admin().handle, host, port)
    typer.echo(json.dumps({"serving": f"http://{host}:{server.server_address[1]}"}))
    threading.Event().wait(seconds)
    server.shutdown()


def register(app: typer.Typer) -> None:
    app.command("halt-org")(halt_org)
    app.command("resume-org")(resume_org)
    app.command("reconcile-halts")(reconcile_halts)
    app.command("serve-admin")(serve_admin)
