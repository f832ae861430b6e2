"""One error decorator for every operator command, and Stripe's errors translated at the adapter: a command
that meets an operator's failure prints one line (or one JSON error) and exits 2; a bug keeps its traceback."""

from __future__ import annotations

import json

import pytest
import stripe
import typer
from typer.testing import CliRunner

from chalicelib.adapters.stripe_errors import translated
from chalicelib.entrypoints.cli_output import operator_errors
from chalicelib.ports import StoreRejected
from chalicelib.stripe_ports import GatewayError


def test_a_stripe_error_leaves_the_adapter_as_a_gateway_error_with_its_status() -> None:
    @translated
    def call() -> None:
        raise stripe.InvalidRequestError("No such customer: cus_x", param="customer", http_status=404)

    with pytest.raises(GatewayError) as caught:
        call()
    assert (caught.value.status, str(caught.value)) == (404, "No such customer: cus_x")
    assert isinstance(caught.value.__cause__, stripe.InvalidRequestError)


def test_no_answer_at_all_is_a_gateway_error_without_a_status() -> None:
    @translated
    def call() -> None:
        raise stripe.APIConnectionError("Request timed out.")

    with pytest.raises(GatewayError) as caught:
        call()
    assert caught.value.status is None


def app_raising(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @operator_errors
    def command(as_json: bool = typer.Option(False, "--json")) -> None:
        print("partial output")  # with --json it must not reach stdout
        raise exc

    return app


@pytest.mark.parametrize("exc,line", [
    (GatewayError("No such customer: cus_x", 404), "Stripe answered 404: No such customer: cus_x"),
    (StoreRejected("ValidationException: key too long"), "ValidationException: key too long"),
])
def test_an_operators_failure_is_one_line_or_one_json_error_and_exit_2(exc: Exception, line: str) -> None:
    plain = CliRunner().invoke(app_raising(exc), [])
    assert plain.exit_code == 2 and plain.exception is not None and "Traceback" not in plain.output
    assert line in plain.stderr and plain.stderr.count("\n") == 1
    as_json = CliRunner().invoke(app_raising(exc), ["--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout) == {"error": line, "exit_code": 2}


def test_a_bug_is_not_dressed_as_an_operators_error() -> None:
    out = CliRunner().invoke(app_raising(KeyError("oops")), [])
    assert isinstance(out.exception, KeyError)
