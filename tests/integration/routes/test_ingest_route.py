"""POST /ingest through chalice.test.Client against moto tables built from infra/."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.ports import BillingStore, StoreUnavailable
from tests.conftest import ARCHIVE, PREFIX, T0, iso, signed_post, tick


def post(client: Any, body: Any, now: int, **kw: Any) -> Any:
    return client.http.post("/ingest", **signed_post(body, now, **kw))


def samples_of(store: BillingStore, bucket: int) -> list[Any]:
    return sorted(store.bucket_samples(bucket), key=lambda s: (s.event_id, s.start))


@pytest.fixture
def orgs(store: DynamoStore) -> None:
    store.put_org(Org("org-pro", plan="pro", billing_mode="legacy", stripe_customer_id="cus_pro"))
    store.put_org(Org("org-free", plan="free", billing_mode="legacy"))


def test_pro_tick_becomes_one_sample(client: Any, svc: Container, orgs: None) -> None:
    now = svc.now()
    res = post(client, [tick("e1", "org-pro", iso(T0 + 1800))], now)
    assert res.status_code == 202
    assert res.json_body["accepted"] == 1 and res.json_body["samples"] == 1
    [s] = samples_of(svc.store, T0)
    assert (s.org_id, s.memory_mb, s.seconds) == ("org-pro", 1024, Decimal("20"))


def test_empty_batch_is_accepted(client: Any, svc: Container) -> None:
    res = post(client, [], svc.now())
    assert (res.status_code, res.json_body) == (202, {"accepted": 0})


@pytest.mark.parametrize(
    "mutate, status, fragment",
    [
        (lambda h: h.pop("X-Signature"), 400, "missing"),
        (lambda h: h.pop("X-Timestamp"), 400, "missing"),
        (lambda h: h.pop("X-Cell-Id"), 400, "X-Cell-Id"),
        (lambda h: h.update({"X-Signature": "0" * 64}), 401, "bad signature"),
    ],
)
def test_auth_errors(client: Any, svc: Container, mutate: Any, status: int, fragment: str) -> None:
    req = signed_post([], svc.now())
    mutate(req["headers"])
    res = client.http.post("/ingest", **req)
    assert res.status_code == status
    assert fragment in res.json_body["error"]


def test_stale_timestamp_is_401(client: Any, svc: Container) -> None:
    res = post(client, [], svc.now() - 301)
    assert res.status_code == 401 and "window" in res.json_body["error"]


def test_body_signed_with_other_secret_is_401(client: Any, svc: Container) -> None:
    res = post(client, [], svc.now(), secret="not-the-secret")
    assert res.status_code == 401


@pytest.mark.parametrize("body", [b"{not json", b'{"id": "x"}', b"42"])
def test_body_not_a_json_array_is_400(client: Any, svc: Container, body: bytes) -> None:
    res = post(client, body, svc.now())
    assert res.status_code == 400 and "error" in res.json_body


def test_oversized_body_is_413(client: Any, svc: Container) -> None:
    body = b"[" + b" " * svc.settings.MAX_BODY_BYTES + b"]"
    res = post(client, body, svc.now())
    assert res.status_code == 413


def test_too_many_envelopes_is_413(client: Any, svc: Container, orgs: None) -> None:
    n = svc.settings.MAX_BATCH_ENVELOPES + 1
    res = post(client, [tick(f"e{i}", "org-pro", iso(T0 + 60)) for i in range(n)], svc.now())
    assert res.status_code == 413 and str(n) in res.json_body["error"]


def test_store_failure_is_503(svc: Container, orgs: None, dynamodb: Any, serve: Callable[[Container], Any]) -> None:
    broken = DynamoStore(dynamodb, "no-such-prefix", svc.settings.sample_retention_seconds)
    client = serve(Container(svc.settings, broken, svc.archive, svc.clock))
    res = post(client, [tick("e1", "org-pro", iso(T0 + 60))], svc.now())
    assert res.status_code == 503 and "retry" in res.json_body["error"]


def test_replayed_envelope_counts_once(client: Any, svc: Container, orgs: None) -> None:
    now = svc.now()
    a = tick("e1", "org-pro", iso(T0 + 100))
    b = tick("e2", "org-pro", iso(T0 + 200))
    assert post(client, [a, b], now).status_code == 202
    assert post(client, [b], now).status_code == 202
    assert post(client, [b, a, tick("e3", "org-pro", iso(T0 + 300))], now).status_code == 202
    got = samples_of(svc.store, T0)
    assert [s.event_id for s in got] == ["e1", "e2", "e3"]
    assert sum(s.seconds for s in got) == Decimal("60")


def test_mixed_batch_stores_valid_and_quarantines_invalid(client: Any, svc: Container, orgs: None) -> None:
    bad_interval = tick("bad1", "org-pro", iso(T0 + 100), interval_s=-5)
    bad_ts = tick("bad2", "org-pro", "yesterday-ish")
    bad_type = tick("bad3", "org-pro", iso(T0 + 100), memory_mb="big")  # type: ignore[arg-type]
    too_long = tick("bad4", "org-pro", iso(T0 + 100), interval_s=10_000)
    body = [tick("ok1", "org-pro", iso(T0 + 100)), bad_interval, 7, bad_ts, bad_type, too_long]
    res = post(client, body, svc.now())
    assert res.status_code == 202
    assert res.json_body["accepted"] == 1 and res.json_body["samples"] == 1
    reasons = {q["index"]: q["reason"] for q in res.json_body["quarantined"]}
    assert set(reasons) == {1, 2, 3, 4, 5}
    assert "negative" in reasons[1] and "object" in reasons[2] and "RFC 3339" in reasons[3]
    assert "memory_mb" in reasons[4] and "exceeds" in reasons[5]
    held = {q.quarantine_id: q for q in svc.store.quarantine("invalid")}
    assert {"bad1", "bad2", "bad3", "bad4"} <= set(held)
    assert len(held) == 5  # the bare 7 is kept under a content digest
    assert json.loads(held["bad1"].raw_json)["payload"]["interval_s"] == -5


def test_non_finite_numbers_are_quarantined(client: Any, svc: Container, orgs: None) -> None:
    raw = json.dumps([tick("nan1", "org-pro", iso(T0 + 100)), tick("ok", "org-pro", iso(T0 + 100))])
    raw = raw.replace('"interval_s": 20', '"interval_s": NaN', 1)
    res = post(client, raw.encode(), svc.now())
    assert res.status_code == 202 and res.json_body["samples"] == 1
    assert "finite" in res.json_body["quarantined"][0]["reason"]


def test_unknown_org_is_held_then_replayed(client: Any, svc: Container, orgs: None) -> None:
    from chalicelib.services.ingest import replay_quarantine

    res = post(client, [tick("u1", "org-new", iso(T0 + 100)), tick("p1", "org-pro", iso(T0 + 100))], svc.now())
    assert res.status_code == 202
    assert res.json_body["quarantined"] == [{"index": 0, "id": "u1", "reason": "org org-new is not known to the edge"}]
    assert [q.quarantine_id for q in svc.store.quarantine("unknown_org")] == ["u1"]

    assert replay_quarantine(svc.store, svc.settings, svc.now()) == {"held": 1, "replayed": 0, "still_held": 1}
    svc.store.put_org(Org("org-new", plan="pro"))
    assert replay_quarantine(svc.store, svc.settings, svc.now()) == {"held": 1, "replayed": 1, "still_held": 0}
    assert list(svc.store.quarantine("unknown_org")) == []
    assert {s.org_id for s in samples_of(svc.store, T0)} == {"org-new", "org-pro"}


def test_plan_comes_from_the_edge_not_the_envelope(client: Any, svc: Container, orgs: None) -> None:
    body = [
        tick("a", "org-free", iso(T0 + 100), plan="pro"),  # stale cell copy says pro
        tick("b", "org-pro", iso(T0 + 100), plan="free"),  # stale cell copy says free
    ]
    res = post(client, body, svc.now())
    assert (res.json_body["pro"], res.json_body["free"]) == (1, 1)
    assert [s.org_id for s in samples_of(svc.store, T0)] == ["org-pro"]


def test_envelope_plan_used_only_when_lookup_fails(svc: Container, orgs: None,
                                                   serve: Callable[[Container], Any]) -> None:
    down = MemoryStore(retention_seconds=svc.settings.sample_retention_seconds)
    down.faults.fail_on("get_orgs", exc=StoreUnavailable("orgs table throttled"), times=None)
    client = serve(Container(svc.settings, down, svc.archive, svc.clock, credit_store=MemoryCredits()))
    body = [tick("a", "org-free", iso(T0 + 100), plan="pro"), tick("b", "org-pro", iso(T0 + 100), plan="free")]
    res = post(client, body, svc.now())
    assert res.status_code == 202
    assert [s.org_id for s in samples_of(down, T0)] == ["org-free"]
    assert down.faults.calls("get_orgs") >= 1


def test_tick_straddling_a_boundary_is_split(client: Any, svc: Container, orgs: None) -> None:
    res = post(client, [tick("s1", "org-pro", iso(T0 + 3600 + 7.5), interval_s=20)], svc.now())
    assert res.json_body["samples"] == 2
    [before] = samples_of(svc.store, T0)
    [after] = samples_of(svc.store, T0 + 3600)
    assert (before.seconds, after.seconds) == (Decimal("12.5"), Decimal("7.5"))
    assert before.end == after.start == Decimal(T0 + 3600)


def test_samples_carry_ttl(client: Any, svc: Container, orgs: None, dynamodb: Any) -> None:
    post(client, [tick("t1", "org-pro", iso(T0 + 100))], svc.now())
    items = dynamodb.scan(TableName=f"{PREFIX}-samples")["Items"]
    assert int(items[0]["expires_at"]["N"]) == T0 + 3600 + svc.settings.sample_retention_seconds
    assert svc.settings.sample_retention_seconds > 35 * 86400
    ttl = dynamodb.describe_time_to_live(TableName=f"{PREFIX}-samples")
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_old_worker_ticks_store_zero_dims(client: Any, svc: Container, orgs: None) -> None:
    env = tick("old", "org-pro", iso(T0 + 100), memory_mb=None)
    del env["payload"]["cpu_count"]
    res = post(client, [env], svc.now())
    assert res.status_code == 202 and res.json_body["samples"] == 1
    [s] = samples_of(svc.store, T0)
    assert s.memory_mb == 0


def test_other_event_types_are_accepted_not_billed(client: Any, svc: Container, orgs: None) -> None:
    other = tick("x", "org-pro", iso(T0 + 100)) | {"type": "sandbox_created", "payload": {"anything": [1]}}
    res = post(client, [other], svc.now())
    assert res.json_body["accepted"] == 1 and res.json_body["ignored"] == 1 and res.json_body["samples"] == 0


def test_raw_batch_is_archived_gzipped(client: Any, svc: Container, orgs: None, s3: Any) -> None:
    req = signed_post([tick("a1", "org-pro", iso(T0 + 100))], svc.now(), cell_id="cell-eu")
    assert client.http.post("/ingest", **req).status_code == 202
    [obj] = s3.list_objects_v2(Bucket=ARCHIVE, Prefix="raw/cell-eu/2026-11-25/")["Contents"]
    body = gzip.decompress(s3.get_object(Bucket=ARCHIVE, Key=obj["Key"])["Body"].read())
    assert body == req["body"]


def test_archive_failure_does_not_fail_ingest(client: Any, svc: Container, orgs: None, s3: Any) -> None:
    s3.delete_bucket(Bucket=ARCHIVE)
    res = post(client, [tick("a1", "org-pro", iso(T0 + 100))], svc.now())
    assert res.status_code == 202 and res.json_body["samples"] == 1


def test_same_envelope_twice_in_one_batch_counts_once(client: Any, svc: Container, orgs: None) -> None:
    a = tick("dup", "org-pro", iso(T0 + 100))
    res = post(client, [a, a, a], svc.now())
    assert res.status_code == 202
    assert [s.event_id for s in samples_of(svc.store, T0)] == ["dup"]
