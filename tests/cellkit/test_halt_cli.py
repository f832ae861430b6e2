"""``python -m cellkit halt-org / resume-org / reconcile-halts / serve-admin``, and the admin HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from cellkit.adapters.admin_http import serve
from cellkit.adapters.sqlite import SqliteStore
from cellkit.cli import app
from cellkit.services.ticker import Ticker
from tests.cellkit.conftest import SECRET


def test_halt_and_resume_by_hand(tmp_path: Path) -> None:
    db = tmp_path / "cell.db"
    store = SqliteStore(str(db))
    import logging

    from cellkit.adapters.clock import SystemClock

    Ticker(store, "cell-a", "w1", SystemClock(), logging.getLogger("t")).start("s1", "org-f", "free", 1024, 1)
    store.close()
    env = {"CELL_DATABASE_URL": f"sqlite://{db}", "CELL_ID": "cell-a", "EVENT_SECRET": SECRET}
    runner = CliRunner()
    halted = runner.invoke(app, ["halt-org", "org-f"], env=env)
    assert halted.exit_code == 0 and json.loads(halted.stdout)["sandboxes"] == ["s1"], halted.output
    resumed = runner.invoke(app, ["resume-org", "org-f"], env=env)
    assert json.loads(resumed.stdout)["sandboxes"] == ["s1"]
    no_edge = runner.invoke(app, ["reconcile-halts"], env=env)
    assert no_edge.exit_code == 2 and "EDGE_URL" in no_edge.output
    served = runner.invoke(app, ["serve-admin", "--port", "0", "--seconds", "0.05"], env=env)
    assert served.exit_code == 0 and "serving" in served.stdout


def test_the_admin_server_answers_json() -> None:
    def handle(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, object]]:
        if path == "/boom":
            raise RuntimeError("store down")
        return 200, {"path": path, "signed": "X-Signature" in headers, "body": body.decode()}

    server = serve(handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sig = hmac.new(SECRET.encode(), b"1.{}", hashlib.sha256).hexdigest()
        req = urllib.request.Request(base + "/admin/halt-org", data=b"{}", method="POST",
                                     headers={"X-Signature": sig, "X-Timestamp": "1"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read()) == {"path": "/admin/halt-org", "signed": True, "body": "{}"}
        boom = urllib.request.Request(base + "/boom", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(boom, timeout=5)
            raise AssertionError("a failing handler must answer 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and "store down" in json.loads(exc.read())["error"]
    finally:
        server.shutdown()


def test_the_edge_s_signed_push_is_what_the_cell_verifies() -> None:
    """chalicelib's HttpCellPusher against the kit's handler over a real socket: the two halves agree."""
    import logging

    from cellkit.adapters.clock import SystemClock
    from cellkit.adapters.halts import halts_for
    from cellkit.adapters.memory import MemoryStore
    from cellkit.services.halts import AdminHandler, Halts
    from chalicelib.adapters.cell_push import HttpCellPusher

    store, clock, log = MemoryStore(), SystemClock(), logging.getLogger("t")
    halt_store = halts_for(store)
    ticker = Ticker(store, "cell-a", "w1", clock, log, halted=halt_store.org_halted_locked)
    ticker.start("s1", "org-f", "free", 1024, 1)
    server = serve(AdminHandler(Halts(halt_store, ticker, clock, log), SECRET, clock).handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    now = lambda: clock.now_us() // 1_000_000  # noqa: E731
    try:
        assert not HttpCellPusher("wrong-secret", now).push(base, "/admin/halt-org", {"org_id": "org-f"})
        assert store.sandbox("s1").status == "running"  # type: ignore[union-attr]
        assert HttpCellPusher(SECRET, now).push(base, "/admin/halt-org",
                                                {"org_id": "org-f", "reason": "credits_exhausted"})
        assert store.sandbox("s1").status == "halted"  # type: ignore[union-attr]
        assert HttpCellPusher(SECRET, now).push(base + "/", "/admin/resume-org", {"org_id": "org-f"})
        assert store.sandbox("s1").status == "running"  # type: ignore[union-attr]
    finally:
        server.shutdown()
    assert not HttpCellPusher(SECRET, now, timeout=0.5).push(base, "/admin/halt-org", {"org_id": "org-f"})
