"""``python -m cellkit aside ...``: the envelopes the edge refused (a 400, or one too large for a 413).

They wait in ``spool_aside`` with the edge's reason until an operator looks: ``list`` shows them,
``replay`` moves them back to the spool (after the edge or the envelope is fixed: the edge dedupes by id,
so a replay never counts twice), ``discard`` deletes them for good, with a reason, logged with each body.
Exit codes: 0 done; 1 some ids were not aside (the rest done); 2 bad usage or settings.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cellkit.adapters.logs import configure, get_logger
from cellkit.cli_common import fail, print_json, settings_or_exit, store_or_exit
from cellkit.ports import CellStore

aside_app = typer.Typer(help="Envelopes the edge refused: list, replay or discard them (with their reasons).",
                        no_args_is_help=True)

IdsArg = Annotated[list[str] | None, typer.Argument(help="Envelope ids (as `aside list` shows them).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every envelope set aside.")]


def _store() -> CellStore:
    return store_or_exit(settings_or_exit())


def _chosen(store: CellStore, ids: list[str] | None, every: bool) -> tuple[list[str], list[str]]:
    """(ids found aside, ids asked for that are not aside)."""
    if bool(ids) == every:
        fail("name the envelope ids, or --all (not both)")
    aside = {a.id for a in store.aside()}
    wanted = sorted(aside) if every else list(dict.fromkeys(ids or []))
    return [i for i in wanted if i in aside], [i for i in wanted if i not in aside]


@aside_app.command("list")
def list_cmd(
    bodies: Annotated[bool, typer.Option(help="Include each envelope's JSON text.")] = False,
) -> None:
    """Print the envelopes set aside: id, the edge's reason, when (unix seconds), size."""
    configure("WARNING")
    store = _store()
    rows = [{"id": a.id, "reason": a.reason, "at": a.at, "bytes": len(a.body.encode(errors="surrogatepass"))}
            | ({"body": a.body} if bodies else {}) for a in store.aside()]
    store.close()
    print_json({"count": len(rows), "aside": rows})


@aside_app.command("replay")
def replay_cmd(ids: IdsArg = None, every: AllOpt = False) -> None:
    """Move envelopes back to the spool's tail: the running forwarder sends them again."""
    configure("WARNING")
    store = _store()
    found, missing = _chosen(store, ids, every)
    moved = store.aside_replay(found)
    store.close()
    get_logger("cellkit").warning("aside_replayed", extra={"envelopes": moved, "ids": found})
    print_json({"replayed": moved, "ids": found, "not_aside": missing})
    raise typer.Exit(1 if missing else 0)


@aside_app.command("discard")
def discard_cmd(
    reason: Annotated[str, typer.Option(help="Why (logged with every discarded envelope).")],
    ids: IdsArg = None, every: AllOpt = False,
) -> None:
    """Delete envelopes for good: the edge never counts them. Each is logged (stderr) with its body."""
    configure("WARNING")
    if not reason.strip():
        fail("--reason must say why")
    store = _store()
    found, missing = _chosen(store, ids, every)
    log = get_logger("cellkit")
    for item in (a for a in store.aside() if a.id in set(found)):
        # The audit trail: what the money was, why the edge refused it, why a person dropped it.
        log.warning("aside_discarded", extra={"alarm": True, "id": item.id, "edge_reason": item.reason,
                                               "reason": reason, "body": item.body})
    gone = store.aside_discard(found)
    store.close()
    print_json({"discarded": gone, "ids": found, "not_aside": missing})
    raise typer.Exit(1 if missing else 0)
