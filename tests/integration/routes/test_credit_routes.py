"""The free tier through the app and the CLI, on moto: spend after /run, the halt in org-policy and the
halted list, pushes to registered cells, a top-up and an upgrade resuming (CONTRACT section 10)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus
from chalicelib.core.orgs import Org
from chalicelib.credit_ports import CellPusher
from chalicelib.services.credits import CURSOR as CREDITS_CURSOR
from tests.conftest import T0, iso, signed_get, signed_post, tick

POLICY = "/internal/org-policy"
HALTED = "/internal/halted-orgs"


class Recorder(CellPusher):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.down: set[str] = set()

    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        self.calls.append((base_url, path, body))
        return base_url not in self.down


def free_tick(event_id: str, ts: int, cents: Any) -> dict[str, Any]:
    return tick(event_id, "org-free", iso(ts), plan="free", cost_cents=cents)


def policy(client: Any, svc: Container, query: str = "org_id=org-free&cell_id=cell-a") -> dict[str, Any]:
    res = client.http.get(f"{POLICY}?{query}", headers=signed_get(POLICY, query, svc.now()))
    assert res.status_code == 200, res.json_body
    return dict(res.json_body)


def run(client: Any, svc: Container) -> dict[str, Any]:
    res = client.http.post("/run", **signed_post({}, svc.now(), cell_id=None))
    assert res.status_code == 200, res.json_body
    return dict(res.json_body["credits"])


def setup(svc: Container) -> Recorder:
    svc.store.put_org(Org("org-free"))
    # A deployment whose spend pass has run before (every minute, in production): its cursor at T0, where the
    # ticks start. A first pass ever reads a whole day back, 96 slots x 4 shards of empty partitions on moto
    # (that first pass: tests/services/test_credit_services.py and every other moto test that calls /run).
    svc.store.advance_cursor(CREDITS_CURSOR, T0)
    pusher = Recorder()
    svc.cell_pusher = pusher
    for cell in ("cell-a", "cell-b"):
        svc.cells().put_cell_status(CellStatus(cell, "edge", False, 0, 0, 0, T0, T0, f"http://{cell}.test"))
    return pusher


def test_spend_shows_after_run_and_the_exhausting_tick_halts_everywhere(
    client: Any, svc: Container, clock: FixedClock
) -> None:
    pusher = setup(svc)
    first = policy(client, svc)
    assert (first["balance_cents"], first["halted"], "capToken" in first) == (500, False, True)
    body = [free_tick("f1", T0 + 20, 2.5), free_tick("f2", T0 + 40, 0.000001), free_tick("f1", T0 + 20, 2.5)]
    assert client.http.post("/ingest", **signed_post(body, svc.now())).status_code == 202
    run(client, svc)
    assert policy(client, svc)["balance_cents"] == 497.499999
    assert pusher.calls == []
    body = [free_tick("f3", T0 + 60, 600)]
    client.http.post("/ingest", **signed_post(body, svc.now()))
    pusher.down = {"http://cell-b.test"}
    done = run(client, svc)
    assert done["pass"]["halted"] == ["org-free"] and done["push"]["failing"] == []
    halted = policy(client, svc)
    assert (halted["balance_cents"], halted["halted"], "capToken" in halted) == (0, True, False)
    assert sorted(c[0] for c in pusher.calls) == ["http://cell-a.test", "http://cell-b.test"]
    assert {c[1] for c in pusher.calls} == {"/admin/halt-org"}
    assert pusher.calls[0][2] == {"org_id": "org-free", "reason": "credits_exhausted"}
    listed = client.http.get(f"{HALTED}?cell_id=cell-b", headers=signed_get(HALTED, "cell_id=cell-b", svc.now()))
    assert listed.json_body["orgs"] == [{"org_id": "org-free", "halted_at": svc.now(), "reason": "credits_exhausted"}]
    pusher.down = set()
    clock.advance(31)
    again = run(client, svc)
    assert again["push"]["acked"] == 1 and again["pass"]["halted"] == [], "cell-b only, and no second halt"


def test_a_grant_resumes_once_per_key_and_show_reads_it(client: Any, svc: Container,
                                                        run_cli: Callable[..., Any]) -> None:
    pusher = setup(svc)
    client.http.post("/ingest", **signed_post([free_tick("f1", T0 + 20, 500)], svc.now()))
    run(client, svc)
    out = run_cli(["credits", "grant", "org-free", "2.5", "--key", "refund-1", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {"org_id": "org-free", "key": "refund-1", "granted": True, "resumed": True,
                                      "balance_cents": "2.500000"}
    twice = run_cli(["credits", "grant", "org-free", "2.5", "--key", "refund-1", "--json"])
    assert json.loads(twice.stdout)["granted"] is False
    shown = json.loads(run_cli(["credits", "show", "org-free", "--json"]).stdout)
    assert (shown["balance_cents"], shown["halted"], shown["granted_cents"]) == ("2.500000", False, "2.500000")
    run(client, svc)
    assert [c[1] for c in pusher.calls[-2:]] == ["/admin/resume-org", "/admin/resume-org"]
    bad = run_cli(["credits", "grant", "org-free", "0", "--key", "k"])
    assert bad.exit_code == 2 and "positive" in bad.output


def test_an_upgrade_clears_the_halt_and_a_return_to_free_starts_at_zero(client: Any, svc: Container) -> None:
    setup(svc)
    client.http.post("/ingest", **signed_post([free_tick("f1", T0 + 20, 700)], svc.now()))
    run(client, svc)
    assert policy(client, svc)["halted"] is True
    svc.store.update_org("org-free", {"plan": "pro"}, svc.now())
    from chalicelib.services.credits import sync_plan

    sync_plan(svc.credits(), svc.settings, "org-free", "pro", svc.now())
    pro = policy(client, svc)
    assert (pro["halted"], "balance_cents" in pro, "capToken" in pro) == (False, False, True)
    assert client.http.get(f"{HALTED}?cell_id=c", headers=signed_get(HALTED, "cell_id=c", svc.now())).json_body[
        "orgs"] == []
    svc.store.update_org("org-free", {"plan": "free"}, svc.now())
    sync_plan(svc.credits(), svc.settings, "org-free", "free", svc.now())
    back = policy(client, svc)
    assert (back["balance_cents"], back["halted"]) == (0, False), "not halted by the downgrade itself"
    client.http.post("/ingest", **signed_post([free_tick("f2", T0 + 60, 0.01)], svc.now()))
    run(client, svc)
    assert policy(client, svc)["halted"] is True, "halted at its first free tick with a cost"
