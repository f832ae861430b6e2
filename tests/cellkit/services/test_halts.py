"""The cell's half of the free tier on every store (memory, SQLite, a real PostgreSQL): a halt stops the
org's running sandboxes as a state change (last tick at the halt, nothing after), refuses creates and
wakes; a resume wakes exactly what the halt stopped; a create racing a halt is either stopped or refused;
the admin handler verifies the edge's signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.halts import halts_for
from cellkit.ports import CellStore
from cellkit.services.halts import AdminHandler, Halts
from cellkit.services.ticker import OrgHalted, Ticker
from tests.cellkit.conftest import SECRET

US = 1_000_000
LOG = logging.getLogger("cellkit.test.halts")


def cell(store: CellStore, clock: ManualClock, worker: str = "w1") -> tuple[Ticker, Halts]:
    halt_store = halts_for(store)
    ticker = Ticker(store, "cell-a", worker, clock, LOG, halted=halt_store.org_halted_locked)
    return ticker, Halts(halt_store, ticker, clock, LOG)


def ticks(store: CellStore) -> list[dict[str, Any]]:
    return [json.loads(i.body) for i in store.spool_head(10_000)]


def test_halt_and_resume(any_store: CellStore, clock: ManualClock) -> None:
    ticker, halts = cell(any_store, clock)
    for sid in ("s1", "s2", "s3"):
        ticker.start(sid, "org-f", "free", 1024, 1)
    ticker.start("p1", "org-p", "pro", 1024, 1)
    clock.advance_us(20 * US)
    ticker.tick()
    ticker.stop("s3")  # stopped by its user before the halt
    clock.advance_us(7 * US)
    halt_at = clock.now_us()
    first = halts.halt("org-f")
    assert (first.changed, first.sandboxes) == (True, ["s1", "s2"])
    assert not halts.halt("org-f").changed, "a second halt changes nothing"
    assert {any_store.sandbox(s).status for s in ("s1", "s2")} == {"halted"}  # type: ignore[union-attr]
    assert any_store.sandbox("s3").status == "stopped"  # type: ignore[union-attr]
    last = {e["sandbox_id"]: e for e in ticks(any_store)}
    assert last["s1"]["timestamp"] == last["s2"]["timestamp"] and last["s1"]["payload"]["interval_s"] == 7
    clock.advance_us(60 * US)
    ticker.tick()
    assert {e["sandbox_id"] for e in ticks(any_store) if e["timestamp"] > last["s1"]["timestamp"]} == {"p1"}
    with pytest.raises(OrgHalted):
        ticker.start("s4", "org-f", "free", 1024, 1)  # a create
    with pytest.raises(OrgHalted):
        ticker.start("s1", "org-f", "free", 1024, 1)  # a wake
    assert halts.store.halted_orgs() == {"org-f": (halt_at, "credits_exhausted")}
    resumed = halts.resume("org-f")
    assert (resumed.changed, resumed.sandboxes) == (True, ["s1", "s2"])
    assert [s.sandbox_id for s in any_store.running_sandboxes()] == ["p1", "s1", "s2"], "s3 stays stopped"
    assert not halts.resume("org-f").changed and halts.store.halted_orgs() == {}


def test_reconcile_halts_resumes_and_repairs_a_crashed_resume(any_store: CellStore, clock: ManualClock) -> None:
    ticker, halts = cell(any_store, clock)
    ticker.start("s1", "org-a", "free", 1024, 1)
    ticker.start("s2", "org-b", "free", 1024, 1)
    assert halts.reconcile({"org-a", "org-b"}) == {"halted": ["org-a", "org-b"], "resumed": [], "woken": []}
    assert halts.reconcile({"org-a", "org-b"})["halted"] == []
    halts.store.set_org_halt("org-b", False, clock.now_us(), "")  # a resume killed before its wake
    assert halts.reconcile({"org-a"}) == {"halted": [], "resumed": [], "woken": ["org-b"]}
    assert halts.reconcile(set()) == {"halted": [], "resumed": ["org-a"], "woken": []}
    assert [s.sandbox_id for s in any_store.running_sandboxes()] == ["s1", "s2"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_create_racing_a_halt_is_stopped_or_refused(kind: str, tmp_path: Any, request: pytest.FixtureRequest,
                                                      clock: ManualClock) -> None:
    """Two processes on one database: the create holds the org's lock; the halt waits for it, then stops
    the new sandbox (it never runs on unhalted)."""
    if kind == "sqlite":
        from cellkit.adapters.sqlite import SqliteStore

        one, two = SqliteStore(str(tmp_path / "c.db")), SqliteStore(str(tmp_path / "c.db"))
    else:
        from cellkit.adapters.postgres import PostgresStore

        one = request.getfixturevalue("pg_store")
        two = PostgresStore(one.conn.info.dsn)  # type: ignore[attr-defined]
    creator, _ = cell(one, clock)
    _, halter = cell(two, clock, "w2")
    halter.resume("org-r")  # the org's halt row exists already (a plain insert would not wait then)
    locked, go = threading.Event(), threading.Event()
    gate = creator.halted

    def slow_gate(org_id: str) -> bool:
        answer = gate(org_id)  # type: ignore[misc]
        locked.set()
        go.wait(5)
        return answer

    creator.halted = slow_gate
    create = threading.Thread(target=creator.start, args=("s9", "org-r", "free", 1024, 1))
    create.start()
    assert locked.wait(5)
    halt = threading.Thread(target=halter.halt, args=("org-r",))
    halt.start()
    time.sleep(0.3)
    assert halt.is_alive(), "the halt waits for the create's lock"
    go.set()
    create.join(5)
    halt.join(10)
    assert two.sandbox("s9").status == "halted"  # type: ignore[union-attr]
    with pytest.raises(OrgHalted):
        creator.start("s10", "org-r", "free", 1024, 1)


def signed(body: dict[str, Any], ts: int, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    sig = hmac.new(secret.encode(), str(ts).encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"X-Timestamp": str(ts), "X-Signature": sig}, raw


def test_the_admin_handler_verifies_and_routes(any_store: CellStore, clock: ManualClock) -> None:
    ticker, halts = cell(any_store, clock)
    ticker.start("s1", "org-f", "free", 1024, 1)
    admin = AdminHandler(halts, SECRET, clock)
    now = clock.now_us() // US
    status, body = admin.handle("/admin/halt-org", *signed({"org_id": "org-f", "reason": "credits_exhausted"}, now))
    assert (status, body["sandboxes"]) == (200, ["s1"])
    status, body = admin.handle("/admin/resume-org", *signed({"org_id": "org-f"}, now))
    assert (status, body["sandboxes"]) == (200, ["s1"])
    assert admin.handle("/admin/halt-org", {}, b"{}")[0] == 400
    assert admin.handle("/admin/halt-org", *signed({"org_id": "org-f"}, now, "wrong"))[0] == 401
    assert admin.handle("/admin/halt-org", *signed({"org_id": "org-f"}, now - 301))[0] == 401
    assert admin.handle("/admin/halt-org", *signed({"org": "x"}, now))[0] == 400
    assert admin.handle("/admin/other", *signed({"org_id": "x"}, now))[0] == 404


def test_the_create_gate_answers_403_for_a_halted_org(any_store: CellStore, clock: ManualClock) -> None:
    from cellkit.core.usage import OrgRow
    from cellkit.services.plans import CreateRequest, SandboxGate

    ticker, halts = cell(any_store, clock)
    any_store.put_org(OrgRow("org-f", "free", "legacy"))
    gate = SandboxGate("cell", "cell-a", None, None, any_store, ticker, clock, LOG)
    assert gate.create(CreateRequest("s1", "org-f", 1024, 1, None)).status == 201
    halts.halt("org-f")
    refused = gate.create(CreateRequest("s2", "org-f", 1024, 1, None))
    assert refused.status == 403 and "halted" in refused.body["error"]
