"""`edge-billing credits ...`: the free tier's balances (CONTRACT section 10).

credits grant ORG CENTS --key K   a top-up, once per key K (a retry with the same key changes nothing);
                                  it resumes a halted org once the balance is positive
credits show ORG                  balance (open spend included), halt, seed, grants and spend
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import typer
from rich.console import Console

from chalicelib.core.limits import printable
from chalicelib.entrypoints.cli_output import Refused, answer, container, operator_errors
from chalicelib.services.credits import CreditConflict, grant_credits, org_credits

console = Console(stderr=True)
credits_app = typer.Typer(help="Free-tier credit balances.", no_args_is_help=True)


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        answer(data)
    else:
        for key, value in data.items():
            sys.stdout.write(f"{key}: {value}\n")


def _fail(message: str, code: int = 2) -> Refused:
    """Printed by `answering`: one line on stderr, or with --json `{"error": ...}` on stdout (cli_output.py)."""
    return Refused(message, code)


def _cents(text: str) -> Decimal:
    try:
        cents = Decimal(text)
    except InvalidOperation:
        raise _fail(f"CENTS must be a number of cents, not {text!r}") from None
    if not cents.is_finite() or cents <= 0 or cents > 10**9:
        raise _fail(f"CENTS must be positive and at most 1,000,000,000, not {text}")
    return cents


@credits_app.command("grant")
@operator_errors
def grant(
    ctx: typer.Context,
    org_id: str = typer.Argument(..., help="The org to top up"),
    cents: str = typer.Argument(..., help="Amount in cents (micro-cent precision), e.g. 250 or 2.5"),
    key: str = typer.Option(..., "--key", help="Idempotency key: the same key grants once"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout"),
) -> None:
    """Top up a free org's credits, once per --key; resumes it if it was halted and now has credit."""
    amount = _cents(cents)
    try:
        printable(org_id, "org_id")
        printable(key, "key")
        svc = container(ctx)
        result = grant_credits(svc.credits(), svc.settings, org_id, amount, key, svc.now())
    except (ValueError, CreditConflict) as exc:
        raise _fail(str(exc)) from None
    _emit({"org_id": result.org_id, "key": result.key, "granted": result.applied, "resumed": result.resumed,
           "balance_cents": result.balance_cents}, as_json)


@credits_app.command("show")
@operator_errors
def show(
    ctx: typer.Context,
    org_id: str = typer.Argument(..., help="The org"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout"),
) -> None:
    """A free org's balance (less what it spent in the last minutes), halt state, seed, grants, spend."""
    try:
        printable(org_id, "org_id")
        svc = container(ctx)
        shown = org_credits(svc.credits(), svc.settings, org_id)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _emit(shown.body(), as_json)


def register(app: Any) -> None:
    app.add_typer(credits_app, name="credits")
