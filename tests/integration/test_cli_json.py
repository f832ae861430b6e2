"""`--json` means exactly one JSON document on stdout, for every command that has the flag, in every outcome
(issue 20): the commands are enumerated from the CLI itself, and each runs once where it can do its work
(moto, the Stripe emulator; rollback cancelling a meter event, which logs) and once against a store that
fails. The cutover commands take the stage's flags from the stage, whatever the shell exports."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
import typer

from chalicelib.adapters.stripe_gateway import StripeAccountsGateway, StripeCutoverGateway
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.stage_config import with_flags
from chalicelib.entrypoints.cli import app as cli
from chalicelib.ports import StoreUnavailable
from tests.conftest import PREFIX, T0

ROOT = Path(__file__).resolve().parents[2]
H = 3600
ARGS = {  # what each command needs besides --json (and --stage/--config for the stage's commands)
    ("cutover", "drain-check"): ["--at", str(T0 + 24 * H)], ("cutover", "arm"): ["--at", str(T0 + 24 * H)],
    ("credits", "grant"): ["org-free", "250", "--key", "k1"], ("credits", "show"): ["org-free"],
}


def json_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))
        if any("--json" in p.opts for p in getattr(command, "params", [])):
            found.append(path)

    walk(typer.main.get_command(cli), ())
    return sorted(found)


def argv(command: tuple[str, ...], config: Path) -> list[str]:
    staged = command[0] in ("cutover", "status")
    return [*command, *ARGS.get(command, []), *(["--stage", "dev", "--config", str(config)] if staged else []),
            "--json"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The dev stage (300 s buckets, 200 s grace: not what the shell exports) on the test tables, live since
    T0 + 24 h: the seam that verify and rollback read is the 24 buckets to cell-a's T0 + 26 h (from T0, it
    was 312 buckets, a moto query each, for the same answers' shape)."""
    path = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", path)
    path.write_text(with_flags(path.read_text(), "dev", {"TABLE_PREFIX": PREFIX, "BUCKET_SECONDS": "300",
                                                         "GRACE_SECONDS": "200", "BILL_FROM": str(T0 + 24 * H)}))
    return path


@pytest.fixture
def stage(svc: Container, emulator: Any, clock: Any) -> Container:
    sc = stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url}, max_network_retries=0)
    svc.cutover_gateway = StripeCutoverGateway(sc)
    svc.account_gateway = StripeAccountsGateway(sc)
    clock.set(T0 + 30 * H)
    now = svc.now()
    svc.cells().put_cell_status(CellStatus("cell-a", "cell", True, T0 + 26 * H, 0, 0, now, now))
    meter = sc.v1.billing.meters.create({"display_name": "1 GB", "event_name": "m1",
                                         "default_aggregation": {"formula": "sum"}})
    customer = sc.v1.customers.create({"name": "acme"})
    sc.v1.billing.meter_events.create({"event_name": meter.event_name, "identifier": "acme:x:m1",
                                       "payload": {"stripe_customer_id": customer.id, "value": "1"}})
    # A meter event the edge sent for a bucket the cell billed: rollback cancels it (and logs that it did).
    svc.store.create_outbox_rows([OutboxRow("acme:x:m1", "acme", T0 + 25 * H, T0 + 26 * H, "m1", Decimal(1),
                                            "first", "pending")])
    svc.store.transition("acme:x:m1", "pending", "sent", now)
    return svc


class Down:
    """Every store call fails as a throttled DynamoDB does."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable(f"{name}: throttled")

        return fail


@pytest.fixture
def store_down(svc: Container) -> Container:
    down: Any = Down()
    return Container(settings=svc.settings, store=down, archive=down, clock=svc.clock, account_store=down,
                     cell_store=down, seam_reader=down, meter_error_store=down, credit_store=down,
                     cutover_gateway=down, account_gateway=down)


def one_document(stdout: str) -> Any:
    return json.loads(stdout)  # raises on anything before or after the one document


def test_the_enumeration_finds_every_json_command() -> None:
    commands = set(json_commands())
    assert {("cutover", c) for c in ("preflight", "plan", "drain-check", "arm", "verify", "rollback")} <= commands
    assert {("status",), ("rollup",), ("ensure-products",), ("meter-errors", "resend")} <= commands


@pytest.mark.parametrize("command", json_commands(), ids=" ".join)
def test_where_it_can_work_stdout_is_one_json_document(stage: Container, config: Path,
                                                       command: tuple[str, ...], run_cli: Callable[..., Any]) -> None:
    out = run_cli(argv(command, config))
    body = one_document(out.stdout)
    assert isinstance(body, dict) and out.exit_code in (0, 1, 3), (out.exit_code, body)
    if command == ("cutover", "rollback"):
        assert [r["id"] for r in body["cancel"]] == ["acme:x:m1"], "it logged meter_event_cancelled"


@pytest.mark.parametrize("command", json_commands(), ids=" ".join)
def test_when_the_store_fails_stdout_is_one_json_error(store_down: Container, config: Path,
                                                      command: tuple[str, ...], run_cli: Callable[..., Any]) -> None:
    out = run_cli(argv(command, config), container=store_down)
    body = one_document(out.stdout)
    if command == ("cutover", "arm"):  # arm only writes the stage's config: no store involved
        assert out.exit_code == 0 and body["ok"] is True
    else:
        assert out.exit_code != 0 and "error" in body, (out.exit_code, body)


@pytest.mark.parametrize("command", [c for c in json_commands() if c[0] in ("cutover", "status")], ids=" ".join)
def test_a_stage_that_is_not_there_is_one_json_error(svc: Container, config: Path, command: tuple[str, ...],
                                                     run_cli: Callable[..., Any]) -> None:
    args = argv(command, config)
    args[args.index("dev")] = "nope"
    out = run_cli(args)
    assert out.exit_code == 2 and "nope" in one_document(out.stdout)["error"]


def test_the_stages_bucket_not_the_shells_decides_t(stage: Container, config: Path,
                                                    run_cli: Callable[..., Any]) -> None:
    # The shell exports BUCKET_SECONDS=3600 (tests/conftest.py); the dev stage here says 300: T=T0+300 is fine.
    code = run_cli(["cutover", "drain-check", "--at", str(T0 + 300), "--stage", "dev",
                    "--config", str(config), "--json"])
    assert "not a multiple" not in code.stdout and one_document(code.stdout)["T"] == T0 + 300
    plan = one_document(run_cli(["cutover", "plan", "--stage", "dev", "--config", str(config), "--json"]).stdout)
    assert plan["T"] % 300 == 0 and plan["bucket_seconds"] == 300 if "bucket_seconds" in plan else plan["T"] % 300 == 0
