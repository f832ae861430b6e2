"""``python -m cellkit``: --help on every command; parity-check and status against the fake edge."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_module_help() -> None:
    out = subprocess.run([sys.executable, "-m", "cellkit", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "Usage: python -m cellkit" in out
    for args in (["run"], ["parity-check"], ["status"]):  # the same app in-process: a process each is slow
        result = CliRunner().invoke(app, [*args, "--help"], prog_name="python -m cellkit")
        assert result.exit_code == 0 and "Usage: python -m cellkit" in result.output, result.output


@pytest.fixture
def cell_env(tmp_path: Path) -> tuple[dict[str, str], FakeEdge, str]:
    edge = FakeEdge(SECRET)
    db = str(tmp_path / "cell.db")
    store = SqliteStore(db)
    store.put_org(OrgRow("a", "pro"))
    with store.transaction() as tx:
        tx.open_scale_event(ScaleEvent("1", "s1", "a", 2048, 1, T0 * 1_000_000, (T0 + 1800) * 1_000_000))
    store.set_cursor("billed_through", T0)
    store.close()
    env = {"CELL_ID": "cell-cli", "CELL_DATABASE_URL": f"sqlite://{db}", "EVENT_SECRET": SECRET,
           "OPENSANDBOX_USAGE_PARITY_URL": edge.url + "/internal/usage-parity", "PRO_BILLING_AUTHORITY": "edge"}
    return env, edge, db


def test_parity_check_prints_posts_and_exits_by_cleanliness(cell_env: tuple[dict[str, str], FakeEdge, str]) -> None:
    env, edge, _ = cell_env
    try:
        edge.state.parity[(T0, T0 + H)] = {"a": 3600.0}
        result = CliRunner().invoke(app, ["parity-check", "--from", str(T0), "--to", str(T0 + H)], env=env)
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        assert body["clean"] is True and body["orgs"][0]["cell_gb_seconds"] == 3600.0
        assert ("cell-cli", T0, T0 + H) in edge.state.parity_reports
        edge.state.parity[(T0, T0 + H)] = {"a": 4000.0}
        assert CliRunner().invoke(app, ["parity-check", "--from", str(T0), "--to", str(T0 + H)], env=env).exit_code == 1
        assert CliRunner().invoke(app, ["parity-check", "--from", str(T0)], env=env).exit_code == 2
    finally:
        edge.stop()


def test_status_prints_and_pushes(cell_env: tuple[dict[str, str], FakeEdge, str]) -> None:
    env, edge, _ = cell_env
    try:
        result = CliRunner().invoke(app, ["status", "--push"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"cell_id": "cell-cli", "authority": "edge", "billers_running": False,
                                             "billed_through": T0, "pending_billable": 0, "spool_depth": 0}
        assert edge.state.cells["cell-cli"]["authority"] == "edge"
    finally:
        edge.stop()


def test_create_in_edge_mode_needs_a_cap_token_and_stop_ends_it(
    cell_env: tuple[dict[str, str], FakeEdge, str]
) -> None:
    import time

    from chalicelib.core.cap_tokens import mint
    from tests.cellkit.conftest import JWT_SECRET

    env, edge, db = cell_env
    env = env | {"SESSION_JWT_SECRET": JWT_SECRET}
    try:
        refused = CliRunner().invoke(app, ["create", "--org", "a", "--sandbox-id", "sx"], env=env)
        assert refused.exit_code == 1 and json.loads(refused.stdout)["status"] == 401
        assert "through the edge" in json.loads(refused.stdout)["error"]
        token = mint(JWT_SECRET, "a", "pro", "cell-cli", int(time.time()))
        args = ["create", "--org", "a", "--memory-mb", "4096", "--cap-token", token, "--sandbox-id", "sx"]
        made = CliRunner().invoke(app, args, env=env)
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout) == {"status": 201, "sandbox_id": "sx", "plan": "pro", "plan_source": "cap-token"}
        stopped = CliRunner().invoke(app, ["stop", "--sandbox-id", "sx"], env=env)
        answer = json.loads(stopped.stdout)
        assert answer == {"sandbox_id": "sx", "status": "stopped", "stopped_at_us": answer["stopped_at_us"]}
        store = SqliteStore(db)
        events = [e for e in store.scale_events(0, 2**62) if e.sandbox_id == "sx"]
        assert len(events) == 1 and events[0].ended_us == answer["stopped_at_us"] and events[0].memory_mb == 4096
        store.close()
    finally:
        edge.stop()


def test_parity_check_tolerance_flag(cell_env: tuple[dict[str, str], FakeEdge, str]) -> None:
    env, edge, _ = cell_env
    try:
        edge.state.parity[(T0, T0 + H)] = {"a": 3700.0}  # +2.78 %
        args = ["parity-check", "--from", str(T0), "--to", str(T0 + H)]
        assert CliRunner().invoke(app, args, env=env).exit_code == 1
        loose = CliRunner().invoke(app, [*args, "--tolerance", "0.05"], env=env)
        assert loose.exit_code == 0 and json.loads(loose.stdout)["tolerance"] == 0.05
    finally:
        edge.stop()


@pytest.mark.parametrize("authority", ["edge", "cell"])
def test_run_process_logs_the_switch_and_reports_status(tmp_path: Path, authority: str) -> None:
    edge = FakeEdge(SECRET)
    try:
        env = {"PATH": "/usr/bin:/bin", "CELL_ID": "cell-run", "CELL_DATABASE_URL": f"sqlite://{tmp_path / 'c.db'}",
               "EDGE_URL": edge.url, "EVENT_SECRET": SECRET, "PRO_BILLING_AUTHORITY": authority,
               "STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": "http://127.0.0.1:9"}
        proc = subprocess.run([sys.executable, "-m", "cellkit", "run", "--seconds", "1.5"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is one JSON event
        stopped = [ln for ln in lines if ln["event"] == "biller_stopped"]
        started = [ln for ln in lines if ln["event"] == "biller_started"]
        if authority == "edge":
            assert sorted(ln["biller"] for ln in stopped) == ["allocator", "usage_reporter"]
            assert [ln["biller"] for ln in lines if ln["event"] == "biller_draining"] == ["sender"]
            assert not started and all(ln["cell_id"] == "cell-run" for ln in stopped)
        else:
            assert len(started) == 3 and not stopped
        import time

        hour = int(time.time()) // 3600 * 3600  # an idle cell owes nothing before the current hour
        assert edge.state.cells["cell-run"] == {"authority": authority, "billers_running": authority == "cell",
                                                "billed_through": hour, "pending_billable": 0, "spool_depth": 0}
    finally:
        edge.stop()
