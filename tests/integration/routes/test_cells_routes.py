"""POST/GET /internal/parity-reports, PUT /internal/cells/{cell_id}, GET /internal/cells (CONTRACT 8)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.ports import StoreUnavailable
from tests.conftest import T0, signed_get, signed_post

REPORTS = "/internal/parity-reports"
CELLS = "/internal/cells"


def report(cell: str = "cell-a", start: int = T0, clean: bool = True, drift: float = 0.001) -> dict[str, Any]:
    return {
        "cell_id": cell,
        "window": {"from": start, "to": start + 3600},
        "tolerance": 0.02,
        "orgs": [
            {"org_id": "org-a", "cell_gb_seconds": 3600.5, "edge_gb_seconds": 3600.25, "drift": drift},
            {"org_id": "org-b", "cell_gb_seconds": 0, "edge_gb_seconds": 0, "drift": None},
        ],
        "clean": clean,
    }


def post_report(client: Any, svc: Container, body: Any, ts: int | None = None) -> Any:
    return client.http.post(REPORTS, **signed_post(body, svc.now() if ts is None else ts, cell_id=None))


def list_reports(client: Any, svc: Container, query: str) -> Any:
    return client.http.get(f"{REPORTS}?{query}", headers=signed_get(REPORTS, query, svc.now()))


def status(**over: Any) -> dict[str, Any]:
    return {"authority": "cell", "billers_running": True, "billed_through": T0, "pending_billable": 3,
            "spool_depth": 12} | over


def test_report_is_stored_and_listed_exactly(client: Any, svc: Container) -> None:
    res = post_report(client, svc, report())
    assert res.status_code == 200, res.json_body
    assert res.json_body == {"stored": True, "cell_id": "cell-a", "window": {"from": T0, "to": T0 + 3600},
                             "clean": True, "max_drift": 0.001}
    listed = list_reports(client, svc, f"cell_id=cell-a&from={T0}&to={T0 + 3600}")
    assert listed.status_code == 200
    [got] = listed.json_body["reports"]
    assert got["orgs"][0] == {"org_id": "org-a", "cell_gb_seconds": 3600.5, "edge_gb_seconds": 3600.25,
                              "drift": 0.001}
    assert got["orgs"][1]["drift"] is None and got["received_at"] == svc.now() and got["tolerance"] == 0.02


def test_repost_of_a_window_replaces_it_and_windows_filter(client: Any, svc: Container, clock: FixedClock) -> None:
    for h in range(3):
        assert post_report(client, svc, report(start=T0 + h * 3600)).status_code == 200
    clock.advance(5)
    assert post_report(client, svc, report(start=T0 + 3600, clean=False, drift=0.5)).json_body["stored"] is True
    listed = list_reports(client, svc, f"cell_id=cell-a&from={T0 + 3600}&to={T0 + 3 * 3600}").json_body["reports"]
    assert [(r["window"]["from"], r["clean"]) for r in listed] == [(T0 + 3600, False), (T0 + 7200, True)]
    # Another cell's reports are its own.
    assert list_reports(client, svc, f"cell_id=cell-b&from={T0}&to={T0 + 9 * 3600}").json_body["reports"] == []


def test_a_delayed_older_post_does_not_replace_a_newer_one(client: Any, svc: Container) -> None:
    now = svc.now()
    assert post_report(client, svc, report(clean=False, drift=0.3), ts=now).json_body["stored"] is True
    late_retry = post_report(client, svc, report(clean=True), ts=now - 60)
    assert late_retry.status_code == 200 and late_retry.json_body["stored"] is False
    [kept] = list_reports(client, svc, f"cell_id=cell-a&from={T0}&to={T0 + 1}").json_body["reports"]
    assert kept["clean"] is False


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda b: b.pop("clean"), "clean"),
        (lambda b: b.update(clean="yes"), "clean"),
        (lambda b: b.update(window={"from": T0, "to": T0}), "greater"),
        (lambda b: b.update(window={"from": T0}), "window.to"),
        (lambda b: b.update(cell_id="bad cell/../"), "cell_id"),
        (lambda b: b["orgs"].append(dict(b["orgs"][0])), "twice"),
        (lambda b: b["orgs"][0].update(cell_gb_seconds=-1), "cell_gb_seconds"),
        (lambda b: b.update(extra=1), "extra"),
        (lambda b: b["orgs"][0].update(drift=0.5), "says clean"),
    ],
)
def test_bad_reports_are_400_naming_the_problem(client: Any, svc: Container, mutate: Any, fragment: str) -> None:
    body = report()
    mutate(body)
    res = post_report(client, svc, body)
    assert res.status_code == 400 and fragment in res.json_body["error"], res.json_body


def test_report_body_that_is_not_json_is_400_and_auth_is_checked(client: Any, svc: Container) -> None:
    assert post_report(client, svc, b"{nope").status_code == 400
    assert post_report(client, svc, b"[]").status_code == 400
    deep = post_report(client, svc, b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested" in deep.json_body["error"]
    unsigned = client.http.post(REPORTS, body=b"{}", headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400 and "X-Timestamp" in unsigned.json_body["error"]
    stale = post_report(client, svc, report(), ts=svc.now() - 301)
    assert stale.status_code == 401


def test_list_reports_needs_cell_and_window_and_a_signature(client: Any, svc: Container) -> None:
    assert list_reports(client, svc, f"from={T0}&to={T0 + 1}").status_code == 400
    assert list_reports(client, svc, f"cell_id=c&from={T0}").status_code == 400
    query = f"cell_id=cell-a&from={T0}&to={T0 + 3600}"
    wrong = signed_get(REPORTS, f"cell_id=cell-b&from={T0}&to={T0 + 3600}", svc.now())
    assert client.http.get(f"{REPORTS}?{query}", headers=wrong).status_code == 401


def test_cell_status_put_and_list_with_last_report_time(client: Any, svc: Container, clock: FixedClock) -> None:
    res = client.http.put(f"{CELLS}/cell-a", **signed_post(status(), svc.now(), cell_id=None))
    assert res.status_code == 200 and res.json_body["stored"] is True
    reported = svc.now()
    clock.advance(90)
    body = status(authority="edge", billers_running=False, pending_billable=0)
    client.http.put(f"{CELLS}/cell-b", **signed_post(body, svc.now(), cell_id=None))
    clock.advance(10)
    listed = client.http.get(CELLS, headers=signed_get(CELLS, "", svc.now()))
    assert listed.status_code == 200
    cells = listed.json_body["cells"]
    assert [c["cell_id"] for c in cells] == ["cell-a", "cell-b"]
    assert cells[0] == {"cell_id": "cell-a", "authority": "cell", "billers_running": True,
                             "billed_through": T0, "pending_billable": 3, "spool_depth": 12,
                             "last_reported_at": reported, "seconds_since_report": 100, "base_url": None}
    assert cells[1]["authority"] == "edge" and cells[1]["seconds_since_report"] == 10


def test_a_cell_registers_its_base_url_for_halt_pushes(client: Any, svc: Container) -> None:
    body = status() | {"base_url": "http://cell-a.internal:8080/"}
    res = client.http.put(f"{CELLS}/cell-a", **signed_post(body, svc.now(), cell_id=None))
    assert res.status_code == 200 and res.json_body["base_url"] == "http://cell-a.internal:8080"
    assert [c.base_url for c in svc.cells().cell_statuses()] == ["http://cell-a.internal:8080"]
    for bad in ("ftp://x", "http://user:pw@x", "http://x/?q=1", "x", "http://x#f"):
        res = client.http.put(f"{CELLS}/cell-a", **signed_post(status() | {"base_url": bad}, svc.now(), cell_id=None))
        assert res.status_code == 400 and "base_url" in res.json_body["error"], bad


def test_older_status_never_replaces_newer(client: Any, svc: Container) -> None:
    now = svc.now()
    client.http.put(f"{CELLS}/cell-a", **signed_post(status(billed_through=T0 + 3600), now, cell_id=None))
    old = client.http.put(f"{CELLS}/cell-a", **signed_post(status(billed_through=T0), now - 30, cell_id=None))
    assert old.status_code == 200 and old.json_body["stored"] is False
    [cell] = svc.cells().cell_statuses()
    assert cell.billed_through == T0 + 3600


@pytest.mark.parametrize(
    "body",
    [
        status(authority="both"),
        status(billed_through=-1),
        status(pending_billable="3"),
        status(billers_running="false"),
        {k: v for k, v in status().items() if k != "spool_depth"},
        status(extra=True),
    ],
)
def test_bad_cell_status_is_400(client: Any, svc: Container, body: dict[str, Any]) -> None:
    res = client.http.put(f"{CELLS}/cell-a", **signed_post(body, svc.now(), cell_id=None))
    assert res.status_code == 400 and res.json_body["error"].startswith("invalid cell status")


def test_cell_id_in_path_is_checked(client: Any, svc: Container) -> None:
    res = client.http.put(f"{CELLS}/{'x' * 200}", **signed_post(status(), svc.now(), cell_id=None))
    assert res.status_code == 400 and "cell id" in res.json_body["error"]


class FailingClient:
    """A DynamoDB client whose every call is throttled (no patching: injected through the services)."""

    def __getattr__(self, name: str) -> Any:
        def fail(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, name)

        return fail


def test_store_failure_is_503(client: Any, svc: Container) -> None:
    from chalicelib.adapters.dynamodb.cells import DynamoCells

    svc.cell_store = DynamoCells(FailingClient(), "x")
    assert post_report(client, svc, report()).status_code == 503
    assert client.http.put(f"{CELLS}/cell-a", **signed_post(status(), svc.now(), cell_id=None)).status_code == 503
    assert client.http.get(CELLS, headers=signed_get(CELLS, "", svc.now())).status_code == 503
    with pytest.raises(StoreUnavailable):
        svc.cells().cell_statuses()
