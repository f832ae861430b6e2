"""Issue 9 (hostile input) on the HMAC GET routes, PUT /internal/orgs and the app's error bodies:
each case is the input the outside fuzz run found, with the answer it must get now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import Mock

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb.common import guarded
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.bootstrap import Container
from chalicelib.core.cap_tokens import verify
from chalicelib.core.hmac_auth import sign_get
from chalicelib.core.orgs import Org
from chalicelib.ports import StoreRejected
from tests.conftest import SECRET, T0, signed_get, signed_post

POLICY = "/internal/org-policy"
PARITY = "/internal/usage-parity"


def get(client: Any, path: str, sent: str, signed: str, now: int) -> Any:
    return client.http.get(f"{path}?{sent}", headers=signed_get(path, signed, now))


@pytest.fixture
def pro(svc: Container) -> None:
    svc.store.put_org(Org("org-a", plan="pro"))


# --- finding 1 ---


def test_a_parameter_appended_to_a_signed_query_is_401(client: Any, svc: Container, pro: None) -> None:
    signed = "org_id=org-a&a=1&b=2&c=3"
    res = get(client, POLICY, signed + "&cell_id=evil", signed, svc.now())
    assert res.status_code == 401 and "capToken" not in res.json_body and "error" in res.json_body
    signed = f"from={T0}&to={T0 + 3600}&a=1&b=2"
    assert get(client, PARITY, signed + "&cell_id=evil", signed, svc.now()).status_code == 401


@pytest.mark.parametrize(
    "query",
    [
        "org_id=org-a&cell_id=cell+eu",  # + for a space
        "org_id=org-a&cell_id=cell%20eu",
        "org_id=org-a&cell_id=cell%3aeu",  # lowercase hex
        "org_id=org-a&a=1&b=2&c=3&cell_id=cell-eu",  # five parameters
        "org_id=org-a&x=1&x=2",  # a repeated key the route does not read
    ],
)
def test_correctly_signed_queries_from_standard_encoders_verify(
    client: Any, svc: Container, pro: None, query: str
) -> None:
    res = get(client, POLICY, query, query, svc.now())
    assert res.status_code == 200, res.json_body
    if "cell_id" in query:
        cell = "cell eu" if ("+" in query or "%20" in query) else "cell:eu" if "%3a" in query else "cell-eu"
        assert verify(res.json_body["capToken"], svc.settings.secret("SESSION_JWT_SECRET"), svc.now(), cell).org_id


def test_a_repeated_parameter_the_route_reads_is_400(client: Any, svc: Container, pro: None) -> None:
    query = "org_id=org-a&org_id=org-b"
    res = get(client, POLICY, query, query, svc.now())
    assert res.status_code == 400 and "more than once" in res.json_body["error"]


def accepted(res: Any) -> bool:
    """Verified and answered: 200, or 503 for a window the edge has not settled yet (the cell waits)."""
    return res.status_code == 200 or (res.status_code == 503 and "settling" in res.json_body)


def test_the_cells_plain_parity_query_verifies(client: Any, svc: Container) -> None:
    query = f"from={T0}&to={T0 + 3600}"
    assert accepted(get(client, PARITY, query, query, svc.now()))


# --- finding 2 (GET side) ---

GARBAGE_AUTH_HEADERS = [
    {"X-Timestamp": "¹", "X-Signature": "0" * 64},
    {"X-Timestamp": "9" * 5000, "X-Signature": "0" * 64},
    {"X-Timestamp": str(T0 + 7200), "X-Signature": "é" * 64},
]


@pytest.mark.parametrize("headers", GARBAGE_AUTH_HEADERS)
def test_garbage_auth_headers_on_gets_are_401(client: Any, svc: Container, headers: dict[str, str]) -> None:
    for url in (f"{POLICY}?org_id=org-a", f"{PARITY}?from={T0}&to={T0 + 3600}"):
        res = client.http.get(url, headers=headers)
        assert res.status_code == 401 and "error" in res.json_body


@pytest.mark.parametrize("headers", GARBAGE_AUTH_HEADERS)
def test_garbage_auth_headers_on_posts_are_401(client: Any, svc: Container, headers: dict[str, str]) -> None:
    for method, url in (("post", "/ingest"), ("put", "/internal/orgs/org-a"), ("post", "/run")):
        res = getattr(client.http, method)(
            url, body=b"[]", headers={"Content-Type": "application/json", "X-Cell-Id": "c", **headers}
        )
        assert res.status_code == 401 and "error" in res.json_body, url


# --- finding 7 ---


@pytest.mark.parametrize(
    "query, fragment",
    [
        (f"from={10**30}&to={10**30 + 3600}", "ASCII digits"),
        ("from=+5&to=3600", "ASCII digits"),
        ("from=%D9%A1&to=3600", "ASCII digits"),  # Arabic-Indic one
        ("from=%2B5&to=3600", "ASCII digits"),
        (f"from={T0}&to={T0 + 25 * 3600}", "25 buckets"),
        (f"from={T0}&from=1&to={T0}", "more than once"),
    ],
)
def test_parity_windows_out_of_bounds_are_400(client: Any, svc: Container, query: str, fragment: str) -> None:
    res = get(client, PARITY, query, query, svc.now())
    assert res.status_code == 400 and fragment in res.json_body["error"], res.json_body


def test_parity_largest_allowed_window_in_buckets(client: Any, svc: Container) -> None:
    ok = f"from={T0}&to={T0 + 24 * 3600}"
    assert accepted(get(client, PARITY, ok, ok, svc.now()))


def test_parity_bound_follows_the_bucket_width(svc: Container, env: dict[str, str],
                                               serve: Callable[[Container], Any]) -> None:
    from chalicelib.settings import load_settings

    narrow = load_settings(env | {"BUCKET_SECONDS": "10", "GRACE_SECONDS": "200", "MAX_PARITY_BUCKETS": "6"})
    client = serve(Container(settings=narrow, store=svc.store, archive=svc.archive, clock=svc.clock))
    # 1,000 s took 385 s on the local stack (100 buckets of 10 s): now refused up front.
    query = f"from={T0}&to={T0 + 1000}"
    res = get(client, PARITY, query, query, svc.now())
    assert res.status_code == 400 and "100 buckets" in res.json_body["error"]
    query = f"from={T0}&to={T0 + 60}"
    assert accepted(get(client, PARITY, query, query, svc.now()))


# --- findings 5 and 8 on PUT /internal/orgs ---


@pytest.mark.parametrize(
    "org_id, body, fragment",
    [
        ("o" * 2049, {"billing_mode": "legacy"}, "longer than"),
        ("org\x00x", {"billing_mode": "legacy"}, "printable"),
        ("orgé", {"billing_mode": "legacy"}, "ASCII"),  # it goes into Stripe headers
        ("org-a", {"billing_mode": "legacy", "max_memory_gb": "4"}, "max_memory_gb"),
        ("org-a", {"billing_mode": "legacy", "max_memory_gb": True}, "max_memory_gb"),
        ("org-a", {"billing_mode": "legacy", "stripe_customer_id": "cus_\x00"}, "printable"),
        ("org-a", {"billing_mode": "legacy", "stripe_customer_id": 42}, "stripe_customer_id"),
        ("org-a", {"billing_mode": "legacy", "stripe_customer_id": "c" * 3000}, "longer than"),
    ],
)
def test_put_org_refuses_what_can_never_be_stored(
    client: Any, svc: Container, org_id: str, body: dict[str, Any], fragment: str
) -> None:
    # The id as API Gateway hands it over (decoded), so the raw character reaches the route.
    res = client.http.put(f"/internal/orgs/{org_id}", **signed_post(body, svc.now(), cell_id=None))
    assert res.status_code == 400 and fragment in res.json_body["error"], res.json_body
    assert svc.store.get_org("org-a") is None


def test_deeply_nested_org_body_is_400(client: Any, svc: Container) -> None:
    raw = b'{"billing_mode": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    res = client.http.put("/internal/orgs/org-a", **signed_post(raw, svc.now(), cell_id=None))
    assert res.status_code == 400 and "nested deeper than 32" in res.json_body["error"]


def test_permanent_store_errors_are_rejections_not_unavailability() -> None:
    def refuse(code: str) -> Any:
        def call() -> None:
            raise ClientError({"Error": {"Code": code, "Message": "key too long"}}, "PutItem")

        return guarded(call)

    with pytest.raises(StoreRejected, match="ValidationException"):
        refuse("ValidationException")()
    from chalicelib.ports import StoreUnavailable

    for code in ("ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"):
        with pytest.raises(StoreUnavailable):
            refuse(code)()


def test_a_store_rejection_is_answered_400(client: Any, svc: Container, serve: Callable[[Container], Any]) -> None:
    store = Mock(spec=DynamoStore)
    store.update_org.side_effect = StoreRejected("update_org: ValidationException")
    client = serve(Container(settings=svc.settings, store=store, archive=svc.archive, clock=svc.clock))
    res = client.http.put("/internal/orgs/org-a", **signed_post({"billing_mode": "legacy"}, svc.now(), cell_id=None))
    assert res.status_code == 400 and "cannot be stored" in res.json_body["error"]


# --- finding 9 ---


def test_unhandled_errors_answer_json_with_error(svc: Container, serve: Callable[[Container], Any]) -> None:
    store = Mock(spec=DynamoStore)
    store.get_org.side_effect = RuntimeError("boom")
    client = serve(Container(settings=svc.settings, store=store, archive=svc.archive, clock=svc.clock))
    query = "org_id=org-a"
    res = client.http.get(f"{POLICY}?{query}", headers=signed_get(POLICY, query, svc.now()))
    assert res.status_code == 500 and res.json_body == {"error": "internal error", "code": "InternalServerError"}
    assert "boom" not in res.body.decode()


def test_chalices_own_answers_carry_error(client: Any, svc: Container) -> None:
    res = client.http.get("/ingest")
    assert res.status_code == 405 and "GET" in res.json_body["error"] and res.json_body["code"]
    res = client.http.post("/ingest", body=b"[]", headers={"Content-Type": "image/png", "X-Cell-Id": "c"})
    assert res.status_code == 415 and "image/png" in res.json_body["error"]
    res = client.http.post("/webhooks/stripe", body=b"{}", headers={"Content-Type": "application/xml"})
    assert res.status_code == 415 and "error" in res.json_body


def test_signed_get_with_wrong_path_secret_still_401(client: Any, svc: Container) -> None:
    query = "org_id=org-a"
    headers = {"X-Timestamp": str(svc.now()), "X-Signature": sign_get(SECRET + "x", svc.now(), POLICY, query)}
    assert client.http.get(f"{POLICY}?{query}", headers=headers).status_code == 401
