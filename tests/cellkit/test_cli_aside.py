"""``python -m cellkit aside list / replay / discard``: an operator's hands on what the edge refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellkit.adapters.sqlite import SqliteStore
from cellkit.cli import app
from cellkit.ports import SpoolItem


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    db = str(tmp_path / "cell.db")
    store = SqliteStore(db)
    store.spool_put([SpoolItem(f"e{i}", json.dumps({"id": f"e{i}"})) for i in range(4)])
    store.spool_set_aside(["e1", "e2"], "400: {\"error\": \"interval_s must be <= 3600\"}", 1795564800)
    store.spool_set_aside(["e3"], "413: single envelope larger than the edge accepts", 1795564900)
    store.close()
    return {"CELL_DATABASE_URL": f"sqlite://{db}"}


def state(env: dict[str, str]) -> tuple[list[str], list[str]]:
    store = SqliteStore(env["CELL_DATABASE_URL"].removeprefix("sqlite://"))
    out = [i.id for i in store.spool_head(100)], [a.id for a in store.aside()]
    store.close()
    return out


def test_list_shows_ids_reasons_and_optionally_bodies(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["aside", "list"], env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["count"] == 3 and [(r["id"], r["reason"][:3], r["at"]) for r in body["aside"]] == [
        ("e1", "400", 1795564800), ("e2", "400", 1795564800), ("e3", "413", 1795564900)]
    assert "body" not in body["aside"][0] and body["aside"][0]["bytes"] == len('{"id": "e1"}')
    full = json.loads(CliRunner().invoke(app, ["aside", "list", "--bodies"], env=env).stdout)
    assert json.loads(full["aside"][2]["body"]) == {"id": "e3"}


def test_replay_moves_them_back_to_the_spool(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["aside", "replay", "e2", "nope"], env=env)
    assert result.exit_code == 1  # one id was not aside; the rest is done
    assert json.loads(result.stdout) == {"replayed": 1, "ids": ["e2"], "not_aside": ["nope"]}
    assert state(env) == (["e0", "e2"], ["e1", "e3"])
    every = CliRunner().invoke(app, ["aside", "replay", "--all"], env=env)
    assert every.exit_code == 0 and json.loads(every.stdout)["replayed"] == 2
    assert state(env) == (["e0", "e2", "e1", "e3"], [])


def test_discard_needs_a_reason_and_logs_each_body(env: dict[str, str]) -> None:
    assert CliRunner().invoke(app, ["aside", "discard", "e1"], env=env).exit_code == 2  # --reason is required
    assert CliRunner().invoke(app, ["aside", "discard", "e1", "--reason", " "], env=env).exit_code == 2
    assert CliRunner().invoke(app, ["aside", "discard", "--reason", "x"], env=env).exit_code == 2  # no ids
    assert CliRunner().invoke(app, ["aside", "discard", "e1", "--all", "--reason", "x"], env=env).exit_code == 2
    result = CliRunner().invoke(app, ["aside", "discard", "e1", "e3", "--reason", "test sandbox, not billable"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"discarded": 2, "ids": ["e1", "e3"], "not_aside": []}
    assert state(env) == (["e0"], ["e2"])
    audit = [json.loads(line) for line in result.stderr.splitlines() if "aside_discarded" in line]
    assert [(a["id"], a["reason"], json.loads(a["body"])["id"], a["alarm"]) for a in audit] == [
        ("e1", "test sandbox, not billable", "e1", True), ("e3", "test sandbox, not billable", "e3", True)]
    assert audit[0]["edge_reason"].startswith("400")
