"""The cell operator's entry points (issue 18, item 12): every error one line on stderr with exit 2 (no
traceback), parity-check with EDGE_URL alone, resize / move / org by hand, and every command docs/cell-kit.md
names exists and answers --help."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellkit.adapters.sqlite import SqliteStore
from cellkit.cli import app
from cellkit.core.usage import OrgRow, ScaleEvent
from tests.cellkit.conftest import SECRET, T0
from tests.cellkit.fake_edge import FakeEdge

ROOT = Path(__file__).resolve().parents[2]
H = 3600


def one_line_error(args: list[str], env: dict[str, str], code: int = 2) -> str:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == "" and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cell.db")


def test_run_without_edge_url_says_so_in_one_line(db: str) -> None:
    line = one_line_error(["run", "--seconds", "0.1"], {"CELL_DATABASE_URL": f"sqlite://{db}", "EDGE_URL": "",
                                                          "OPENSANDBOX_USAGE_PARITY_URL": ""})
    assert line.startswith("EDGE_URL must be set")  # before: a SettingsError traceback, exit 1


@pytest.mark.parametrize("env, says", [
    ({"TICK_SECONDS": "soon"}, "TICK_SECONDS"),
    ({"EDGE_URL": "http://127.0.0.1:9", "EVENT_SECRET": ""}, "EVENT_SECRET is not set"),
    ({"CELL_DATABASE_URL": "sqlite:///no/such/dir/cell.db"}, "CELL_DATABASE_URL (sqlite) cannot be opened"),
])
@pytest.mark.parametrize("command", [["status"], ["run"], ["parity-check"], ["create", "--org", "o"],
                                     ["stop", "--sandbox-id", "s"], ["org", "list"], ["aside", "list"]])
def test_bad_settings_are_one_line_exit_2_for_every_command(
    db: str, env: dict[str, str], says: str, command: list[str]
) -> None:
    base = {"CELL_DATABASE_URL": f"sqlite://{db}", "EDGE_URL": "http://127.0.0.1:9", "EVENT_SECRET": SECRET}
    if command[0] in ("org", "aside") and "EVENT_SECRET" in says:
        return  # these never talk to the edge: no secret needed
    assert says in one_line_error(command, base | env)


def test_parity_check_needs_only_edge_url_and_the_parity_url_overrides(db: str) -> None:
    store = SqliteStore(db)
    store.put_org(OrgRow("a", "pro"))
    with store.transaction() as tx:
        tx.open_scale_event(ScaleEvent("1", "s1", "a", 2048, 1, T0 * 1_000_000, (T0 + 1800) * 1_000_000))
    store.close()
    edge, other = FakeEdge(SECRET), FakeEdge(SECRET)
    try:
        edge.state.parity[(T0, T0 + H)] = {"a": 3600.0}
        other.state.parity[(T0, T0 + H)] = {"a": 9000.0}
        env = {"CELL_ID": "cell-p", "CELL_DATABASE_URL": f"sqlite://{db}", "EVENT_SECRET": SECRET,
               "EDGE_URL": edge.url, "OPENSANDBOX_USAGE_PARITY_URL": ""}
        args = ["parity-check", "--from", str(T0), "--to", str(T0 + H)]
        alone = CliRunner().invoke(app, args, env=env)
        assert alone.exit_code == 0, alone.output  # before: "OPENSANDBOX_USAGE_PARITY_URL ... must be set", 2
        assert json.loads(alone.stdout)["clean"] is True and ("cell-p", T0, T0 + H) in edge.state.parity_reports
        override = CliRunner().invoke(app, args, env=env | {
            "OPENSANDBOX_USAGE_PARITY_URL": other.url + "/internal/usage-parity"})
        assert override.exit_code == 1 and json.loads(override.stdout)["orgs"][0]["edge_gb_seconds"] == 9000.0
        assert ("cell-p", T0, T0 + H) in other.state.parity_reports
        edge.stop()
        assert "usage-parity unreachable" in one_line_error(args, env, code=3)
    finally:
        other.stop()


def test_resize_move_and_org_rows_by_hand(db: str) -> None:
    env = {"CELL_ID": "cell-h", "CELL_DATABASE_URL": f"sqlite://{db}", "EDGE_URL": "", "PRO_BILLING_AUTHORITY": "cell",
           "OPENSANDBOX_USAGE_PARITY_URL": ""}
    run = CliRunner().invoke
    put = run(app, ["org", "put", "--org", "a", "--plan", "pro", "--billing-mode", "unified", "--stripe-customer",
                    "cus_a", "--max-memory-mb", "8192"], env=env)
    assert put.exit_code == 0 and json.loads(put.stdout) == {
        "org_id": "a", "plan": "pro", "billing_mode": "unified", "stripe_customer_id": "cus_a", "max_memory_mb": 8192}
    assert json.loads(run(app, ["org", "list"], env=env).stdout)["count"] == 1
    assert run(app, ["org", "put", "--org", "a", "--plan", "gold"], env=env).exit_code == 2  # not pro/free
    made = run(app, ["create", "--org", "a", "--memory-mb", "4096", "--sandbox-id", "sx"], env=env)
    assert made.exit_code == 0 and json.loads(made.stdout)["plan"] == "pro", made.output
    again = run(app, ["create", "--org", "a", "--sandbox-id", "sx"], env=env)
    assert again.exit_code == 1 and json.loads(again.stdout)["status"] == 409  # before: a traceback
    too_big = run(app, ["create", "--org", "a", "--memory-mb", "16384", "--sandbox-id", "sy"], env=env)
    assert too_big.exit_code == 1 and json.loads(too_big.stdout)["status"] == 403
    resized = run(app, ["resize", "--sandbox-id", "sx", "--memory-mb", "8192", "--cpu", "4"], env=env)
    assert resized.exit_code == 0 and json.loads(resized.stdout)["memory_mb"] == 8192, resized.output
    moved = run(app, ["move", "--sandbox-id", "sx", "--worker-id", "w9"], env=env)
    assert moved.exit_code == 0 and json.loads(moved.stdout)["worker_id"] == "w9"
    assert run(app, ["stop", "--sandbox-id", "sx"], env=env).exit_code == 0
    gone = run(app, ["resize", "--sandbox-id", "sx", "--memory-mb", "1024"], env=env)
    assert gone.exit_code == 1 and "not running" in json.loads(gone.stdout)["error"]
    store = SqliteStore(db)
    events = sorted(store.scale_events(0, 2**62), key=lambda e: e.started_us)
    assert [(e.memory_mb, e.cpu_count) for e in events] == [(4096, 1), (8192, 4)] and events[-1].ended_us
    store.close()


def documented_commands() -> list[list[str]]:
    """Every `python -m cellkit ...` docs/cell-kit.md names, as its words up to the first option or value."""
    text = (ROOT / "docs" / "cell-kit.md").read_text()
    found = set()
    for match in re.finditer(r"python -m cellkit ((?:[a-z][a-z-]* ?)+)", text):
        found.add(tuple(match.group(1).split()))
    return [list(words) for words in sorted(found)]


def test_every_documented_command_exists_and_answers_help() -> None:
    commands = documented_commands()
    assert ["aside", "replay"] in commands and ["org", "put"] in commands and ["resize"] in commands
    for words in commands:
        result = CliRunner().invoke(app, [*words, "--help"], prog_name="python -m cellkit")
        assert result.exit_code == 0 and "Usage: python -m cellkit" in result.output, (words, result.output)
