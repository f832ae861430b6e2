"""``python -m cellkit billable list / retry / void``: a row Stripe refused is counted in pending_billable
(it holds the cutover's drain-check) until a person retries or voids it."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellkit.adapters.sqlite import SqliteStore
from cellkit.cli import app
from cellkit.ports import Billable
from cellkit.services.status import status_body

T0 = 1795564800


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    db = str(tmp_path / "cell.db")
    store = SqliteStore(db)
    store.put_billable([Billable(f"cell:c:o:{T0}:m{i}", "o", T0, f"m{i}", Decimal("1.5")) for i in range(4)])
    store.mark_billable(f"cell:c:o:{T0}:m0", "failed", "No such customer: cus_x", T0)
    store.mark_billable(f"cell:c:o:{T0}:m1", "failed", "No such meter", T0)
    store.mark_billable(f"cell:c:o:{T0}:m3", "sent", "sent", T0)
    store.close()
    return {"CELL_DATABASE_URL": f"sqlite://{db}"}


def pending_billable(env: dict[str, str]) -> int:
    store = SqliteStore(env["CELL_DATABASE_URL"].removeprefix("sqlite://"))
    try:
        return int(status_body(store, "edge", False, T0 + 7200)["pending_billable"])
    finally:
        store.close()


def test_list_retry_void(env: dict[str, str]) -> None:
    run = CliRunner().invoke
    assert pending_billable(env) == 3  # two failed, one pending: none of them sent
    listed = json.loads(run(app, ["billable", "list"], env=env).stdout)
    assert listed["count"] == 2 and [(r["meter"], r["value"], r["detail"][:7]) for r in listed["rows"]] == [
        ("m0", "1.500000", "No such"), ("m1", "1.500000", "No such")]
    retried = run(app, ["billable", "retry", f"cell:c:o:{T0}:m0", f"cell:c:o:{T0}:m2"], env=env)
    assert retried.exit_code == 1  # m2 was pending, not failed: left as it is
    assert json.loads(retried.stdout)["identifiers"] == [f"cell:c:o:{T0}:m0"]
    assert json.loads(run(app, ["billable", "list", "--state", "pending"], env=env).stdout)["count"] == 2
    assert run(app, ["billable", "void", f"cell:c:o:{T0}:m1"], env=env).exit_code == 2  # --reason required
    voided = run(app, ["billable", "void", f"cell:c:o:{T0}:m1", f"cell:c:o:{T0}:m3", "--reason", "test org"],
                 env=env)
    assert voided.exit_code == 1 and json.loads(voided.stdout)["not_voidable"] == [f"cell:c:o:{T0}:m3"]  # sent
    audit = [json.loads(line) for line in voided.stderr.splitlines() if "billable_voided" in line]
    assert [(a["identifier"], a["was"], a["reason"], a["alarm"]) for a in audit] == [
        (f"cell:c:o:{T0}:m1", "failed", "test org", True)]
    assert pending_billable(env) == 2  # the voided row no longer holds the drain-check
    assert run(app, ["billable", "retry", "--failed"], env=env).exit_code == 0
    assert run(app, ["billable", "retry", "x", "--failed"], env=env).exit_code == 2
