"""``python -m cellkit create / stop / resize / move / org ...``: the control plane's calls, by hand.

Each prints one JSON document. Exit codes: 0 done; 1 refused (create: the gate's answer, its HTTP-like
``status`` in the JSON; stop, resize, move: the sandbox is not running); 2 bad usage, settings or store.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import typer

from cellkit.adapters.logs import configure, get_logger
from cellkit.cli_common import cell_or_exit, fail, print_json, settings_or_exit, store_or_exit
from cellkit.core.usage import OrgRow
from cellkit.services.plans import CreateRequest, EdgePolicy, SandboxGate
from cellkit.services.ticker import Change, SandboxNotRunning

SandboxOpt = Annotated[str, typer.Option(help="The sandbox.")]
org_app = typer.Typer(help="The cell's own org rows (plan, billing mode, Stripe customer, memory cap).",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("create")(create_cmd)
    app.command("stop")(stop_cmd)
    app.command("resize")(resize_cmd)
    app.command("move")(move_cmd)
    app.add_typer(org_app, name="org")


def create_cmd(
    org: Annotated[str, typer.Option(help="The org the sandbox bills to.")],
    memory_mb: Annotated[int, typer.Option(help="Memory in MB.", min=1)] = 1024,
    cpu: Annotated[int, typer.Option(help="vCPUs.", min=1)] = 1,
    cap_token: Annotated[str | None, typer.Option(help="The edge's cap-token (required when authority is edge).")]
    = None,
    sandbox_id: Annotated[str | None, typer.Option(help="Default: a new id.")] = None,
) -> None:
    """Create (start) a sandbox through the cell's gate: cap-token, else the edge's org policy, else the org row.

    Prints {"status": 201, "sandbox_id", "plan", "plan_source"} (exit 0), or {"status": 401 | 403 | 409,
    "error"} (exit 1): 401 no or bad cap-token, 403 memory over the plan's cap, 409 already running.
    """
    configure("WARNING")
    settings = settings_or_exit()
    cell = cell_or_exit(settings, get_logger("cellkit"))
    gate = SandboxGate(settings.authority, settings.CELL_ID, settings.SESSION_JWT_SECRET,
                       EdgePolicy(cell.edge) if cell.edge else None, cell.store, cell.ticker, cell.clock, cell.log)
    answer = gate.create(CreateRequest(sandbox_id or f"sbx-{uuid.uuid4().hex[:12]}", org, memory_mb, cpu, cap_token))
    print_json({"status": answer.status} | answer.body)
    raise typer.Exit(0 if answer.status == 201 else 1)


def _lifecycle(sandbox_id: str, call: str, **kw: object) -> Change:
    configure("WARNING")
    cell = cell_or_exit(settings_or_exit(), get_logger("cellkit"))
    try:
        # The clock is read inside the write lock: no tick slips in between.
        change: Change = getattr(cell.ticker, call)(sandbox_id, **kw)
    except SandboxNotRunning:
        print_json({"sandbox_id": sandbox_id, "error": "not running (unknown or stopped)"})
        raise typer.Exit(1) from None
    return change


def stop_cmd(sandbox_id: SandboxOpt) -> None:
    """Stop a sandbox: its last tick ends now and its scale event closes. Prints its status and the time."""
    change = _lifecycle(sandbox_id, "stop")
    print_json({"sandbox_id": sandbox_id, "status": change.sandbox.status, "stopped_at_us": change.at_us})


def resize_cmd(
    sandbox_id: SandboxOpt,
    memory_mb: Annotated[int, typer.Option(help="The new memory in MB.", min=1)],
    cpu: Annotated[int, typer.Option(help="The new vCPUs.", min=1)] = 1,
) -> None:
    """Resize a running sandbox: a last tick at the old size ends now, a new scale event starts."""
    change = _lifecycle(sandbox_id, "resize", memory_mb=memory_mb, cpu_count=cpu)
    print_json({"sandbox_id": sandbox_id, "memory_mb": change.sandbox.memory_mb,
                "cpu_count": change.sandbox.cpu_count, "resized_at_us": change.at_us})


def move_cmd(
    sandbox_id: SandboxOpt,
    worker_id: Annotated[str, typer.Option(help="The worker that owns it from now on.", min=1)],
) -> None:
    """Migrate a running sandbox to another worker: the old owner's interval ends now, the new one ticks on."""
    change = _lifecycle(sandbox_id, "move", worker_id=worker_id)
    print_json({"sandbox_id": sandbox_id, "worker_id": change.sandbox.worker_id, "moved_at_us": change.at_us})


@org_app.command("put")
def org_put(
    org: Annotated[str, typer.Option(help="The org id.")],
    plan: Annotated[Literal["pro", "free"], typer.Option(help="The cell's view of its plan.")] = "free",
    billing_mode: Annotated[Literal["legacy", "unified"], typer.Option(help="Meters: tiers or GB-seconds.")]
    = "legacy",
    stripe_customer: Annotated[str | None, typer.Option(help="cus_...: the cell's sender bills it.")] = None,
    max_memory_mb: Annotated[int | None, typer.Option(help="Memory cap per sandbox (default: the plan's).", min=1)]
    = None,
) -> None:
    """Create or replace an org row (the cell's own billing before the cutover, the last-resort plan after)."""
    configure("WARNING")
    if not org:
        fail("--org must not be empty")
    store = store_or_exit(settings_or_exit())
    row = OrgRow(org, plan, billing_mode, stripe_customer, max_memory_mb)
    store.put_org(row)
    store.close()
    print_json(vars(row))


@org_app.command("list")
def org_list() -> None:
    """Print every org row."""
    configure("WARNING")
    store = store_or_exit(settings_or_exit())
    rows = [vars(o) for o in store.orgs().values()]
    store.close()
    print_json({"count": len(rows), "orgs": rows})
