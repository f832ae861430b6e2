"""POST /run, GET /health, and the 15-minute schedule through chalice.test.Client."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.services.ingest import ingest_batch
from chalicelib.settings import load_settings
from tests.conftest import BASE_ENV, T0, iso, signed_post, tick


def test_run_answers_per_contract(client: Any, svc: Container, clock: FixedClock) -> None:
    svc.store.put_org(Org("leg", plan="pro", stripe_customer_id="cus_1"))
    clock.set(T0 + 3600 + 10)
    ingest_batch([tick("a", "leg", iso(T0 + 100))], "cell-a", svc.store, svc.settings, svc.now())
    clock.set(T0 + 3600 + 600)
    res = client.http.post("/run", **signed_post(b"", svc.now(), cell_id=None))
    assert res.status_code == 200
    body = res.json_body
    assert body["ok"] is True and body["shadow"] is True and body["send"] is None
    assert body["cfg"] == {"billFrom": 0, "bucketSec": 3600, "grace": 600, "nowSec": T0 + 4200}
    assert body["roll"]["buckets"] == [T0] and body["roll"]["rows"] == 1


def test_run_needs_hmac(client: Any, svc: Container) -> None:
    assert client.http.post("/run", body=b"").status_code == 400
    bad = signed_post(b"", svc.now(), cell_id=None, secret="nope")
    assert client.http.post("/run", **bad).status_code == 401


def test_run_is_404_in_prod(serve: Callable[[Container], Any], svc: Container) -> None:
    prod = load_settings(BASE_ENV | {"WORKER_ENV": "prod"})
    client = serve(Container(prod, svc.store, svc.archive, svc.clock))
    res = client.http.post("/run", **signed_post(b"", svc.now(), cell_id=None))
    assert res.status_code == 404 and res.json_body == {"error": "not found"}
    assert client.http.get("/health").json_body == {"ok": True, "env": "prod", "shadow": True}


def test_schedule_runs_a_rollup(svc: Container, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import app

    # The deployed app's container is built at import from the environment; this one is handed this test's
    # (moto, a fixed clock), so what is checked is the schedule's wiring: EventBridge -> the app's container.
    monkeypatch.setattr(app, "container", svc)

    svc.store.put_org(Org("leg", plan="pro"))
    clock.set(T0 + 3600 + 10)
    ingest_batch([tick("a", "leg", iso(T0 + 100))], "cell-a", svc.store, svc.settings, svc.now())
    clock.set(T0 + 3600 + 600)
    with Client(
        app, stage_name="dev", project_dir=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    ) as c:
        out = c.lambda_.invoke(
            "rollup",
            c.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]),
        )
    assert out.payload["roll"]["buckets"] == [T0]
    state = svc.store.bucket_state(T0)
    assert state is not None and state.rolled
