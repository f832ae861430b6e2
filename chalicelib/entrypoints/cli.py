"""The operator CLI: `python -m chalicelib.cli COMMAND` (also installed as `edge-billing`).

Every command builds the same services the Lambdas use (settings from the
environment, DynamoDB/S3 through boto3's endpoint variables), so what an
operator runs is what production runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from chalicelib.core.orgs import Org
from chalicelib.entrypoints.cli_output import Handed, Refused, answer, container, operator_errors
from chalicelib.services.ingest import ingest_batch, replay_quarantine

console = Console()
app = typer.Typer(help="Operator commands for edge usage billing.", no_args_is_help=True)
tables_app = typer.Typer(help="DynamoDB tables.", no_args_is_help=True)
orgs_app = typer.Typer(help="Org records (plan authority).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Envelopes held at ingest.", no_args_is_help=True)
archive_app = typer.Typer(help="The raw-batch archive in S3.", no_args_is_help=True)
app.add_typer(tables_app, name="tables")
app.add_typer(orgs_app, name="orgs")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(archive_app, name="archive")
cap_token_app = typer.Typer(help="Capability tokens for cells (PRO_BILLING_AUTHORITY=edge).", no_args_is_help=True)
app.add_typer(cap_token_app, name="cap-token")


def emit(data: Any, as_json: bool) -> None:
    if as_json:
        answer(data)
    else:
        console.print_json(json.dumps(data, default=str))


@tables_app.command("create")
@operator_errors
def tables_create(
    ctx: typer.Context,
    prefix: str = typer.Option(None, help="Table prefix (default: TABLE_PREFIX)"),
) -> None:
    """Create the tables from infra/template.json at the configured endpoint (idempotent)."""
    from chalicelib.bootstrap import create_tables

    svc = container(ctx)
    created = create_tables(prefix or svc.settings.TABLE_PREFIX)
    console.print(f"created {len(created)} table(s): {', '.join(created) or 'none (all exist)'}")


@orgs_app.command("put")
@operator_errors
def orgs_put(
    ctx: typer.Context,
    org_id: str,
    billing_mode: str = typer.Option(..., help="legacy | unified"),
    plan: str = typer.Option(None, help="pro | free"),
    stripe_customer_id: str = typer.Option(None),
    max_memory_gb: int = typer.Option(None),
) -> None:
    """Create or update an org (same rules as PUT /internal/orgs/{org_id})."""
    from pydantic import ValidationError

    from chalicelib.entrypoints.org_schema import OrgBody, org_body
    from chalicelib.services.orgs import put_org

    fields = {"billing_mode": billing_mode, "plan": plan, "stripe_customer_id": stripe_customer_id,
              "max_memory_gb": max_memory_gb}
    try:
        body = OrgBody.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        console.print(f"[red]error:[/red] invalid org: {exc}")
        raise typer.Exit(2) from None
    svc = container(ctx)
    emit(org_body(put_org(svc.store, org_id, body.model_dump(exclude_none=True), svc.now())), as_json=False)


@orgs_app.command("get")
@operator_errors
def orgs_get(ctx: typer.Context, org_id: str) -> None:
    """Show the edge's record of an org."""
    org: Org | None = container(ctx).store.get_org(org_id)
    if org is None:
        console.print(f"[red]error:[/red] org {org_id} is not known to the edge")
        raise typer.Exit(1)
    emit(asdict(org), as_json=False)


@quarantine_app.command("list")
@operator_errors
def quarantine_list(ctx: typer.Context, kind: str = typer.Option(None, help="invalid | unknown_org")) -> None:
    """List held envelopes with why they were held."""
    table = Table("id", "kind", "cell", "received", "reason")
    count = 0
    for q in container(ctx).store.quarantine(kind):
        table.add_row(q.quarantine_id, q.kind, q.cell_id, str(q.received_at), q.reason)
        count += 1
    console.print(table)
    console.print(f"{count} held")


@quarantine_app.command("replay")
@operator_errors
def quarantine_replay(ctx: typer.Context) -> None:
    """Store ticks held for an unknown org whose org now exists."""
    svc = container(ctx)
    emit(replay_quarantine(svc.store, svc.settings, svc.now(), svc.credits()), as_json=False)


@archive_app.command("rebuild")
@operator_errors
def archive_rebuild(
    ctx: typer.Context,
    day: str = typer.Option(..., help="YYYY-MM-DD"),
    cell: str = typer.Option(None),
) -> None:
    """Re-ingest archived raw batches (idempotent: sample identity is the event id)."""
    from chalicelib.core.envelopes import parse_batch

    svc = container(ctx)
    totals = {"batches": 0, "samples": 0, "quarantined": 0}
    for key, body in svc.archive.batches(cell, day):
        cell_id = key.split("/")[1]
        result = ingest_batch(parse_batch(body), cell_id, svc.store, svc.settings, svc.now(), svc.credits())
        totals["batches"] += 1
        totals["samples"] += result.samples
        totals["quarantined"] += len(result.quarantined)
    emit(totals, as_json=False)


@app.command("rollup")
@operator_errors
def rollup(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the run's JSON only"),
) -> None:
    """Run one rollup now (the same run the 5-minute schedule makes)."""
    from chalicelib.services.rollup import run_rollup

    emit(run_rollup(container(ctx), trigger="cli").body(), as_json=json_out)


@app.command("parity")
@operator_errors
def parity(ctx: typer.Context, start: int = typer.Option(..., "--from"), end: int = typer.Option(..., "--to")) -> None:
    """GB-seconds of pro samples per org in [from, to), whole buckets (what /internal/usage-parity answers)."""
    from chalicelib.services.parity import NotSettled, WindowError, aligned, parse_window, usage_parity

    svc = container(ctx)
    try:
        window = aligned(parse_window({"from": str(start), "to": str(end)}), svc.settings.BUCKET_SECONDS)
        body = usage_parity(svc.store, svc.settings, window, svc.now(), svc.rollup_queue())
    except WindowError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except NotSettled as exc:
        console.print(f"not yet: {exc}")
        raise typer.Exit(3) from None
    table = Table("org", "GB-seconds", "samples")
    for row in body["orgs"]:
        table.add_row(row["org_id"], f"{row['gb_seconds']:.6f}", str(row["samples"]))
    console.print(table)


@app.command("ensure-products")
@operator_errors
def ensure_products_command(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be created; change nothing"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only"),
) -> None:
    """Find or create Stripe meters, product and prices, then publish the edge's price catalog."""
    from chalicelib.core.catalog import EmptyCatalog
    from chalicelib.services.products import ensure_products

    svc = container(ctx)
    try:
        result = ensure_products(svc.accounts_gateway(), svc.accounts(), svc.now(), dry_run=dry_run)
    except EmptyCatalog as exc:
        raise Refused(str(exc)) from None
    if json_out:
        emit(result.body(), as_json=True)
        return
    plan = result.plan
    verb = "would create" if dry_run else "created"
    console.print(f"{verb}: {len(plan.create_meters)} meter(s), {int(plan.create_product)} product, "
                  f"{len(plan.create_prices)} price(s)")
    for spec in plan.missing_dashboard:
        console.print(f"[yellow]missing:[/yellow] price {spec.lookup_key} ({spec.catalog_key}) is made in the "
                      "Stripe dashboard; create it there with that lookup key and run this again")
    for key in plan.meter_mismatch:
        console.print(f"[red]check:[/red] price {key} is attached to another meter than the pricing table says")
    table = Table("key", "price id", "lookup key", "meter")
    for e in result.entries:
        table.add_row(e.key, e.price_id, e.lookup_key, e.meter)
    console.print(table)
    console.print("catalog published" if result.published else "[yellow]dry run: nothing published[/yellow]")


@cap_token_app.command("mint")
@operator_errors
def cap_token_mint(
    ctx: typer.Context,
    org_id: str,
    cell_id: str = typer.Option(..., "--cell", help="The cell the token is for"),
    ttl: int = typer.Option(300, help="Seconds the token lives (max 3600)"),
) -> None:
    """Mint a cap-token carrying the edge's current plan for the org."""
    from chalicelib.core.cap_tokens import CapTokenError, mint

    svc = container(ctx)
    org = svc.store.get_org(org_id)
    if org is None:
        console.print(f"[red]error:[/red] org {org_id} is not known to the edge")
        raise typer.Exit(1)
    try:
        token = mint(svc.settings.secret("SESSION_JWT_SECRET"), org_id, org.plan, cell_id, svc.now(), ttl)
    except CapTokenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    sys.stdout.write(token + "\n")


if TYPE_CHECKING:
    from chalicelib.entrypoints.cli_cutover import LocalStack


def _register_cutover() -> None:
    from chalicelib.entrypoints.cli_cutover import register
    from chalicelib.entrypoints.cli_status import register as register_status

    register(app)
    register_status(app)


_register_cutover()


def _register_credits() -> None:
    from chalicelib.entrypoints.cli_credits import register

    register(app)


_register_credits()


def main(local_stack: LocalStack | None = None) -> None:
    """The CLI; the local entry point (`python -m sim.operator`) hands it the local stack. Each command builds its
    container from the environment on first use (cli_output.container)."""
    app(obj=Handed(local_stack=local_stack))


if __name__ == "__main__":
    main()
