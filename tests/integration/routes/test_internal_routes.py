"""GET /internal/usage-parity, GET /internal/org-policy and PUT /internal/orgs/{org_id}."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.accounts import MemoryAccounts
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.cap_tokens import verify
from chalicelib.core.hmac_auth import sign_get
from chalicelib.core.orgs import Org
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import Settings
from tests.conftest import PREFIX, SECRET, T0, iso, signed_get, signed_post, tick

PARITY = "/internal/usage-parity"


def parity(client: Any, svc: Container, start: int, end: int) -> Any:
    query = f"from={start}&to={end}"
    return client.http.get(f"{PARITY}?{query}", headers=signed_get(PARITY, query, svc.now()))


@pytest.fixture
def mem_svc(settings: Settings, clock: FixedClock) -> Container:
    """The same app on the in-memory store: parity's answers over a rolled hour without moto's cost per call.
    DynamoDB's side of those reads: test_parity_never_reads_a_raw_sample here, and tests/contract."""
    store = MemoryStore(retention_seconds=settings.sample_retention_seconds, sample_shards=settings.SAMPLE_SHARDS)
    return Container(settings, store, MemoryArchive(), clock, account_store=MemoryAccounts(), cell_store=MemoryCells(),
                     credit_store=MemoryCredits())


@pytest.fixture
def mem_client(serve: Callable[[Container], Any], mem_svc: Container) -> Any:
    return serve(mem_svc)


@pytest.fixture
def mem_usage(mem_client: Any, mem_svc: Container, clock: FixedClock) -> None:
    rolled_hours(mem_client, mem_svc, clock)


@pytest.fixture
def usage(client: Any, svc: Container, clock: FixedClock) -> None:
    rolled_hours(client, svc, clock)


def rolled_hours(client: Any, svc: Container, clock: FixedClock) -> None:
    svc.store.put_org(Org("org-a", plan="pro"))
    svc.store.put_org(Org("org-b", plan="pro", billing_mode="unified"))
    svc.store.put_org(Org("org-free", plan="free"))
    ticks = [tick(f"a{i}", "org-a", iso(T0 + 20 * (i + 1)), memory_mb=4096) for i in range(180)]  # 1 h at 4 GB
    ticks += [tick("b1", "org-b", iso(T0 + 3600 + 5), interval_s=10, memory_mb=2048)]  # 5 s before, 5 s after
    ticks += [tick("f1", "org-free", iso(T0 + 100))]
    clock.set(T0 + 3700)  # the cells send in near real time: nothing is late
    res = client.http.post("/ingest", **signed_post(ticks, svc.now()))
    assert res.status_code == 202 and res.json_body["late"] == 0
    clock.set(T0 + 3 * 3600 + 600)
    run_rollup(svc, "test")  # settles the hours: parity answers from their aggregates
    clock.set(T0 + 7200)


def test_parity_exact_gb_seconds_per_pro_org(mem_client: Any, mem_svc: Container, mem_usage: None) -> None:
    client, svc = mem_client, mem_svc
    res = parity(client, svc, T0, T0 + 3600)
    assert res.status_code == 200
    body = res.json_body
    assert body["window"] == {"from": T0, "to": T0 + 3600} and body["as_of"] == svc.now()
    assert body["orgs"] == [
        {"org_id": "org-a", "gb_seconds": 4 * 3600.0, "samples": 180},
        {"org_id": "org-b", "gb_seconds": 10.0, "samples": 1},
    ]


def test_parity_next_hour_gets_the_other_half_of_a_split_tick(
    mem_client: Any, mem_svc: Container, mem_usage: None
) -> None:
    client, svc = mem_client, mem_svc
    res = parity(client, svc, T0 + 3600, T0 + 7200)
    assert res.json_body["orgs"] == [{"org_id": "org-b", "gb_seconds": 10.0, "samples": 1}]


def test_parity_window_must_be_whole_buckets(mem_client: Any, mem_svc: Container, mem_usage: None) -> None:
    client, svc = mem_client, mem_svc
    res = parity(client, svc, T0 + 1800, T0 + 3600)
    assert res.status_code == 400 and "bucket boundaries" in res.json_body["error"]


def test_parity_never_reads_a_raw_sample(client: Any, svc: Container, usage: None, dynamodb: Any) -> None:
    first = parity(client, svc, T0, T0 + 3600).json_body
    # Deleting a raw sample changes nothing: the answer comes from the aggregates.
    from chalicelib.adapters.dynamodb.items import sample_pk
    from chalicelib.core.samples import shard_of

    dynamodb.delete_item(
        TableName=f"{PREFIX}-samples",
        Key={"pk": {"S": sample_pk(T0, shard_of("a0", svc.store.bucket_shard_count(T0)))}, "sk": {"S": "a0"}},
    )
    assert parity(client, svc, T0, T0 + 3600).json_body["orgs"] == first["orgs"]


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("from=10", "required"),
        ("from=x&to=y", "integers"),
        ("from=100&to=100", "greater"),
        ("from=0&to=999999999", "maximum"),
    ],
)
def test_parity_bad_windows_are_400(client: Any, svc: Container, query: str, fragment: str) -> None:
    res = client.http.get(f"{PARITY}?{query}", headers=signed_get(PARITY, query, svc.now()))
    assert res.status_code == 400 and fragment in res.json_body["error"]


def test_parity_auth(client: Any, svc: Container) -> None:
    query = f"from={T0}&to={T0 + 3600}"
    svc.store.save_aggregates(T0, [], {})
    assert client.http.get(f"{PARITY}?{query}").status_code == 400
    wrong = {"X-Timestamp": str(svc.now()), "X-Signature": sign_get(SECRET, svc.now(), PARITY, "from=1&to=2")}
    assert client.http.get(f"{PARITY}?{query}", headers=wrong).status_code == 401
    stale = signed_get(PARITY, query, svc.now() - 400)
    assert client.http.get(f"{PARITY}?{query}", headers=stale).status_code == 401
    # Parameters signed in the other order still verify (API Gateway does not keep the raw query).
    swapped = signed_get(PARITY, f"to={T0 + 3600}&from={T0}", svc.now())
    assert client.http.get(f"{PARITY}?{query}", headers=swapped).status_code == 200


def test_org_policy(client: Any, svc: Container) -> None:
    svc.store.put_org(Org("org-a", plan="pro", max_memory_gb=16))
    q = "org_id=org-a"
    res = client.http.get(f"/internal/org-policy?{q}", headers=signed_get("/internal/org-policy", q, svc.now()))
    assert res.json_body == {"org_id": "org-a", "plan": "pro", "maxMemoryMb": 16384, "halted": False}
    q = "org_id=nobody"
    res = client.http.get(f"/internal/org-policy?{q}", headers=signed_get("/internal/org-policy", q, svc.now()))
    assert res.status_code == 404 and "nobody" in res.json_body["error"]


def test_org_policy_mints_a_cap_token_for_the_asking_cell(client: Any, svc: Container, env: dict[str, str]) -> None:
    svc.store.put_org(Org("org-a", plan="pro"))
    q = "org_id=org-a&cell_id=cell-eu"
    res = client.http.get(f"/internal/org-policy?{q}", headers=signed_get("/internal/org-policy", q, svc.now()))
    token = verify(res.json_body["capToken"], env["SESSION_JWT_SECRET"], svc.now(), cell_id="cell-eu")
    assert (token.org_id, token.plan, token.iat) == ("org-a", "pro", svc.now())


def test_put_org_creates_and_updates(client: Any, svc: Container) -> None:
    body = {"billing_mode": "unified", "plan": "pro", "stripe_customer_id": "cus_1"}
    res = client.http.put("/internal/orgs/org-z", **signed_post(body, svc.now(), cell_id=None))
    assert res.status_code == 200
    assert res.json_body["plan"] == "pro" and res.json_body["stripe_customer_id"] == "cus_1"
    res = client.http.put("/internal/orgs/org-z", **signed_post({"billing_mode": "legacy"}, svc.now(), cell_id=None))
    assert res.json_body["billing_mode"] == "legacy" and res.json_body["stripe_customer_id"] == "cus_1"
    org = svc.store.get_org("org-z")
    assert org is not None and org.plan == "pro" and org.billing_mode == "legacy"


@pytest.mark.parametrize("body", [{"billing_mode": "weird"}, {"plan": "pro"}, {"billing_mode": "legacy", "extra": 1}])
def test_put_org_rejects_bad_bodies(client: Any, svc: Container, body: dict[str, Any]) -> None:
    res = client.http.put("/internal/orgs/org-z", **signed_post(body, svc.now(), cell_id=None))
    assert res.status_code == 400 and "invalid org body" in res.json_body["error"]


def test_health(client: Any, svc: Container) -> None:
    assert client.http.get("/health").json_body == {"ok": True, "env": "dev", "shadow": True}


def test_parity_gb_seconds_are_exact_decimals(svc: Container) -> None:
    from chalicelib.core.envelopes import Envelope, Tick, UsageTick
    from chalicelib.core.samples import samples_from_tick
    from chalicelib.services.parity import Window, usage_parity

    svc.store.put_org(Org("org-x", plan="pro"))
    env = Envelope.model_validate(json.loads(json.dumps(tick("d1", "org-x", iso(T0 + 50)))))
    t = Tick(env, UsageTick(memory_mb=1536, interval_s=Decimal("0.1")), env.ts)
    svc.store.put_samples(samples_from_tick(t, "org-x", 3600, 86400 * 40, 0))
    svc.clock.set(T0 + 3600 + 600)  # type: ignore[attr-defined]
    run_rollup(svc, "test")
    body = usage_parity(svc.store, svc.settings, Window(T0, T0 + 3600), svc.now())
    assert body["orgs"][0]["gb_seconds"] == 0.15


def test_a_bucket_not_settled_is_503_with_retry_after_and_no_outage(
    client: Any, svc: Container, clock: FixedClock
) -> None:
    from chalicelib.core.telemetry import http_points

    clock.set(T0 + 3600 + 600)
    closed = parity(client, svc, T0, T0 + 3600)
    assert closed.status_code == 503 and closed.headers["Retry-After"] == "60"
    assert closed.json_body["settling"] == [T0] and closed.json_body["retry_after"] == 60
    assert http_points(PARITY, 503, closed.json_body) == [], "a wait, not a store outage: no alarm"
    still_open = parity(client, svc, T0 + 3600, T0 + 7200)
    assert still_open.status_code == 503 and still_open.headers["Retry-After"] == str(3600 + 60)
    run_rollup(svc, "test")
    assert parity(client, svc, T0, T0 + 3600).status_code == 200


def test_a_closed_unsettled_bucket_is_handed_to_the_pipeline_once(
    client: Any, svc: Container, clock: FixedClock
) -> None:
    from chalicelib.adapters.memory.queue import MemoryQueue
    from chalicelib.services.rollup_fanout import drain

    queue = MemoryQueue()
    svc.task_queue = queue
    svc.store.put_org(Org("org-a", plan="pro"))
    clock.set(T0 + 3000)  # one on-time tick: the bucket's shard count is recorded
    assert client.http.post("/ingest", **signed_post([tick("a1", "org-a", iso(T0 + 20))], svc.now())).status_code == 202
    clock.set(T0 + 3600 + 600)
    assert parity(client, svc, T0, T0 + 3600).status_code == 503
    assert parity(client, svc, T0, T0 + 3600).status_code == 503
    shards = svc.store.bucket_shard_count(T0)
    assert shards > 0 and len(queue) == shards, "one task per shard, not one per asker"
    assert parity(client, svc, T0 + 3600, T0 + 7200).status_code == 503 and len(queue) == shards, "open: not yet"
    drain(svc.store, svc.settings, queue, "w", svc.now)
    assert parity(client, svc, T0, T0 + 3600).status_code == 200


def test_stragglers_not_swept_yet_count_from_the_late_index(
    mem_client: Any, mem_svc: Container, mem_usage: None
) -> None:
    client, svc = mem_client, mem_svc
    late = [tick("late-1", "org-b", iso(T0 + 1000), interval_s=20, memory_mb=2048)]
    res = client.http.post("/ingest", **signed_post(late, svc.now()))
    assert res.json_body["late"] == 1
    body = parity(client, svc, T0, T0 + 3600).json_body
    assert {"org_id": "org-b", "gb_seconds": 10.0 + 40.0, "samples": 2} in body["orgs"]
