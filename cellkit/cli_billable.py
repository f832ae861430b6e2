"""``python -m cellkit billable ...``: the cell's own outbox rows (settled hours, one Stripe meter event each).

A row Stripe refused is ``failed`` (``meter_event_rejected``) and counts in ``pending_billable`` with the
pending ones, holding the cutover's drain-check: a person looks, then ``retry`` (back to pending, after
fixing the cause: a customer, a meter) or ``void`` (never to be billed; logged with the reason).
Exit codes: 0 done; 1 some identifiers were not in the state the command needs (the rest done); 2 bad usage.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import typer

from cellkit.adapters.logs import configure, get_logger
from cellkit.cli_common import fail, print_json, settings_or_exit, store_or_exit
from cellkit.core.usage import wire_value
from cellkit.ports import BillableState, CellStore

billable_app = typer.Typer(help="The cell's outbox rows: list them, retry the failed, void what must not be billed.",
                           no_args_is_help=True)
IdsArg = Annotated[list[str] | None, typer.Argument(help="Row identifiers (as `billable list` shows them).")]


def _store() -> CellStore:
    return store_or_exit(settings_or_exit())


def _ids(store: CellStore, ids: list[str] | None, every_failed: bool) -> list[str]:
    if bool(ids) == every_failed:
        fail("name the identifiers, or --failed (not both)")
    if every_failed:
        return [b.identifier for b in store.billable("failed", 1_000_000)]
    return list(dict.fromkeys(ids or []))


@billable_app.command("list")
def list_cmd(
    state: Annotated[Literal["pending", "failed", "sent", "voided"], typer.Option(help="Which rows.")] = "failed",
    limit: Annotated[int, typer.Option(help="At most this many rows (the count is of all).", min=1)] = 100,
) -> None:
    """Print the rows in one state, oldest hour first, with Stripe's last answer (``detail``)."""
    configure("WARNING")
    store = _store()
    rows = [{"identifier": b.identifier, "org_id": b.org_id, "bucket_start": b.bucket_start, "meter": b.meter,
             "value": wire_value(b.value), "detail": b.detail} for b in store.billable(state, limit)]
    out = {"state": state, "count": store.count_billable(state), "rows": rows}
    store.close()
    print_json(out)


@billable_app.command("retry")
def retry_cmd(
    ids: IdsArg = None,
    every_failed: Annotated[bool, typer.Option("--failed", help="Every failed row.")] = False,
) -> None:
    """Failed rows back to pending: the sender sends them at its next run (same identifiers: never twice)."""
    configure("WARNING")
    store = _store()
    wanted = _ids(store, ids, every_failed)
    now = int(time.time())
    done = [i for i in wanted if store.transition_billable(i, "failed", "pending", "operator retry", now)]
    store.close()
    get_logger("cellkit").warning("billable_retried", extra={"identifiers": done})
    print_json({"retried": len(done), "identifiers": done, "not_failed": [i for i in wanted if i not in done]})
    raise typer.Exit(1 if len(done) < len(wanted) else 0)


@billable_app.command("void")
def void_cmd(
    reason: Annotated[str, typer.Option(help="Why it must never be billed (logged, and kept as the row's detail).")],
    ids: IdsArg = None,
) -> None:
    """Pending or failed rows that must never be billed: voided, no longer counted in pending_billable."""
    configure("WARNING")
    if not reason.strip():
        fail("--reason must say why")
    if not ids:
        fail("name the identifiers")
    store = _store()
    now, log, done = int(time.time()), get_logger("cellkit"), list[str]()
    for ident in dict.fromkeys(ids):
        was: BillableState
        for was in ("failed", "pending"):
            if store.transition_billable(ident, was, "voided", f"voided: {reason}", now):
                log.warning("billable_voided", extra={"alarm": True, "identifier": ident, "was": was,
                                                      "reason": reason})
                done.append(ident)
                break
    store.close()
    print_json({"voided": len(done), "identifiers": done, "not_voidable": [i for i in ids if i not in done]})
    raise typer.Exit(1 if len(done) < len(set(ids)) else 0)
