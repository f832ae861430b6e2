"""`edge-billing status` and `meter-errors`: the stage's flags from the stage, and with --json exactly one
JSON document on stdout in every outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.memory.operator import MemoryMeterErrors
from chalicelib.bootstrap import Container
from chalicelib.core.meter_error_report import ERROR_REPORT_TRIGGERED, MeterError, MeterErrorReport
from chalicelib.core.outbox import OutboxRow
from tests.conftest import PREFIX, T0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A stage whose flags differ from the shell's: 300 s buckets, live, BILL_FROM set."""
    path = tmp_path / "config.json"
    env = {"WORKER_ENV": "staging", "SHADOW": "false", "BILL_FROM": str(T0), "BUCKET_SECONDS": "300",
           "GRACE_SECONDS": "200", "TABLE_PREFIX": PREFIX}
    path.write_text(json.dumps({"version": "2.0", "app_name": "edge-billing",
                                "stages": {"staging": {"environment_variables": env}}}))
    return path


def test_status_takes_the_stages_flags_and_prints_one_json_document(svc: Container, config: Path,
                                                                    run_cli: Callable[..., Any]) -> None:
    out = run_cli(["status", "--stage", "staging", "--config", str(config), "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert (body["stage"], body["shadow"], body["bucket_seconds"], body["bill_from"]) == ("staging", False, 300, T0)
    text = run_cli(["status", "--stage", "staging", "--config", str(config)])
    assert text.exit_code == 0 and "SHADOW=false" in text.stdout


@pytest.mark.parametrize("args", [["status", "--stage", "nope"], ["status", "--stage", "staging"]])
def test_status_failures_are_one_json_document_too(svc: Container, config: Path, args: list[str],
                                                   run_cli: Callable[..., Any]) -> None:
    # "nope": no such stage; "staging" with the real config: a stage whose tables are not the shell's.
    extra = ["--config", str(config)] if args[-1] == "nope" else []
    out = run_cli([*args, *extra, "--json"])
    assert out.exit_code == 2 and set(json.loads(out.stdout)) == {"error", "exit_code"}


def test_meter_errors_list_and_resend_print_one_json_document(svc: Container, run_cli: Callable[..., Any]) -> None:
    reports = MemoryMeterErrors()
    svc.meter_error_store = reports
    row = OutboxRow("acme:1:m", "acme", T0, T0 + 3600, "m", Decimal(2), "first", "failed")
    svc.store.create_outbox_rows([row])
    reports.put_meter_error_report(MeterErrorReport("evt_1", ERROR_REPORT_TRIGGERED, "mtr", "", "1 invalid", 1,
                                                    (MeterError("meter_event_customer_not_found", "x", row.id),),
                                                    svc.now(), (row.id,)))
    listed = run_cli(["meter-errors", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["reports"][0]["marked"] == [row.id]
    first = run_cli(["meter-errors", "resend", "--json"])
    assert first.exit_code == 0, first.output
    assert [r["identifier"] for r in json.loads(first.stdout)["resent"]] == [row.id]
    again = run_cli(["meter-errors", "resend"])
    assert again.exit_code == 0 and "0 row(s) queued again" in again.stdout
