"""Every route the app has is locked (issue 13, security): enumerated from the Chalice app object,
so a route added tomorrow is covered without editing this file.

Only `GET /health` is public; `POST /webhooks/stripe` and `POST /webhooks/stripe/events` answer to
Stripe's signature (tests/security/test_signatures.py); the operator's routes (`/ops/*`) carry
Chalice's IAMAuthorizer, so API Gateway refuses them without SigV4 credentials (checked here on the
app and in the packaged template); everything else needs the cells' HMAC. `POST /run` does not exist
in prod, signed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.bootstrap import Container
from chalicelib.core.hmac_auth import sign_body, sign_get
from chalicelib.core.orgs import Org
from chalicelib.settings import load_settings
from tests.conftest import SECRET, T0, iso, signed_post, tick

PUBLIC = {("/health", "GET")}
STRIPE_SIGNED = {("/webhooks/stripe", "POST"), ("/webhooks/stripe/events", "POST")}
OPERATOR = {("/ops/status", "GET"), ("/ops/status.json", "GET")}

# Bodies and queries a signed request would be accepted with: an unlocked route answers 2xx to them,
# so a 2xx (or anything but 400/401) below means the signature was not checked.
VALID_BODIES: dict[str, Any] = {
    "/ingest": [tick("locked-1", "org-pro", iso(T0 + 7100))],
    "/internal/orgs/{org_id}": {"billing_mode": "unified", "plan": "pro"},
    "/internal/cells/{cell_id}": {"authority": "edge", "billers_running": False, "billed_through": T0,
                                  "pending_billable": 0, "spool_depth": 0},
    "/internal/parity-reports": {"cell_id": "cell-x", "window": {"from": T0, "to": T0 + 3600}, "tolerance": 0.02,
                                 "orgs": [], "clean": True},
    "/run": {},
}
VALID_QUERIES = {
    "/internal/usage-parity": f"from={T0}&to={T0 + 3600}",
    "/internal/org-policy": "org_id=org-pro&cell_id=cell-x",
    "/internal/parity-reports": f"cell_id=cell-x&from={T0}&to={T0 + 3600}",
}


def app_routes() -> list[tuple[str, str]]:
    from app import app

    return sorted((path, method) for path, methods in app.routes.items() for method in methods)


def iam_routes() -> list[tuple[str, str]]:
    from chalice import IAMAuthorizer

    from app import app

    return sorted((path, method) for path, methods in app.routes.items() for method, entry in methods.items()
                  if isinstance(entry.authorizer, IAMAuthorizer))


def hmac_routes() -> list[tuple[str, str]]:
    return [r for r in app_routes() if r not in PUBLIC | STRIPE_SIGNED | set(iam_routes())]


def concrete(path: str) -> str:
    return path.replace("{org_id}", "org-x").replace("{cell_id}", "cell-x")


def request(client: Any, path: str, method: str, headers: dict[str, str], body: bytes, query: str) -> Any:
    url = concrete(path) + (f"?{query}" if query else "")
    return client.http.request(method, url, headers={"Content-Type": "application/json", "X-Cell-Id": "cell-x",
                                                     **headers}, body=body)


def attempts(path: str, method: str, now: int) -> Iterator[tuple[str, dict[str, str], int]]:
    body = json.dumps(VALID_BODIES.get(path, {})).encode() if method != "GET" else b""
    query = VALID_QUERIES.get(path, "") if method == "GET" else ""

    def signature(secret: str, at: int) -> str:
        return sign_get(secret, at, concrete(path), query) if method == "GET" else sign_body(secret, at, body)

    yield "no auth headers", {}, 400
    yield "timestamp only", {"X-Timestamp": str(now)}, 400
    yield "garbage signature", {"X-Timestamp": str(now), "X-Signature": "0" * 64}, 401
    yield "another secret", {"X-Timestamp": str(now), "X-Signature": signature(SECRET + "x", now)}, 401
    yield "replayed, 301 s old", {"X-Timestamp": str(now - 301), "X-Signature": signature(SECRET, now - 301)}, 401
    yield "signed 301 s ahead", {"X-Timestamp": str(now + 301), "X-Signature": signature(SECRET, now + 301)}, 401
    yield "signed, timestamp changed", {"X-Timestamp": str(now + 1), "X-Signature": signature(SECRET, now)}, 401


@pytest.fixture
def orgs(svc: Container) -> Container:
    svc.store.put_org(Org("org-pro", plan="pro", billing_mode="legacy", stripe_customer_id="cus_pro"))
    return svc


def test_the_enumeration_sees_every_kind_of_route() -> None:
    routes = app_routes()
    assert set(routes) >= PUBLIC | STRIPE_SIGNED | OPERATOR
    assert len(hmac_routes()) >= 9  # ingest, run, orgs, policy, parity, parity reports x2, cells x2


def test_the_operators_routes_and_only_they_are_behind_iam() -> None:
    from app import app

    assert set(iam_routes()) == OPERATOR
    # Every other route has no authorizer at all: the HMAC (or Stripe's signature) is its lock.
    others = [(p, m) for p, methods in app.routes.items() for m, e in methods.items() if (p, m) not in OPERATOR]
    assert all(app.routes[p][m].authorizer is None for p, m in others)


def test_the_packaged_api_refuses_the_operators_routes_without_sigv4(packaged: dict[str, Any]) -> None:
    """In the template API Gateway deploys: AWS_IAM on each operator route, on no other."""
    resources = packaged["template"]["Resources"]
    swagger = next(r["Properties"]["DefinitionBody"] for r in resources.values()
                   if r["Type"] == "AWS::Serverless::Api")
    schemes = swagger["securityDefinitions"]
    iam = {name for name, d in schemes.items() if d.get("x-amazon-apigateway-authtype") == "awsSigv4"}
    assert iam, schemes
    locked = {(path, method.upper()) for path, ops in swagger["paths"].items() for method, op in ops.items()
              if isinstance(op, dict) and any(set(s) & iam for s in op.get("security", []))}
    assert locked == OPERATOR


def test_every_internal_route_refuses_requests_without_a_good_hmac(client: Any, orgs: Container) -> None:
    now = orgs.now()
    wrong = []
    for path, method in hmac_routes():
        for name, headers, status in attempts(path, method, now):
            body = json.dumps(VALID_BODIES.get(path, {})).encode() if method != "GET" else b""
            res = request(client, path, method, headers, body, VALID_QUERIES.get(path, "") if method == "GET" else "")
            error = json.loads(res.body or b"{}").get("error") if res.body else None
            if res.status_code != status or not isinstance(error, str):
                wrong.append((method, path, name, res.status_code, res.body[:120]))
    assert wrong == []
    # And none of them changed anything.
    assert orgs.store.get_org("org-x") is None
    assert orgs.cells().cell_statuses() == [] and orgs.cells().parity_reports("cell-x", 0, 2 * T0) == []
    assert orgs.store.cursor("rollup") is None


def test_the_valid_requests_above_are_accepted_when_signed(client: Any, orgs: Container) -> None:
    # Without this the test above could pass on requests that fail for another reason.
    now = orgs.now()
    orgs.store.save_aggregates(T0, [], {})  # the parity window is settled: answered 200
    for path, method in hmac_routes():
        body = json.dumps(VALID_BODIES.get(path, {})).encode() if method != "GET" else b""
        query = VALID_QUERIES.get(path, "") if method == "GET" else ""
        sig = sign_get(SECRET, now, concrete(path), query) if method == "GET" else sign_body(SECRET, now, body)
        res = request(client, path, method, {"X-Timestamp": str(now), "X-Signature": sig}, body, query)
        assert 200 <= res.status_code < 300, (method, path, res.status_code, res.body[:200])


def test_unsigned_webhook_and_open_health(client: Any, orgs: Container) -> None:
    res = client.http.post("/webhooks/stripe", body=b'{"id":"evt_1","type":"invoice.paid"}',
                           headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and "Stripe-Signature" in res.json_body["error"]
    assert client.http.get("/health").json_body["ok"] is True


def test_the_prod_stage_is_the_one_without_run() -> None:
    # The 404 below keys on WORKER_ENV=prod: the prod stage of the source of truth must say so.
    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
    assert config["stages"]["prod"]["environment_variables"]["WORKER_ENV"] == "prod"
    assert load_settings(config["stages"]["prod"]["environment_variables"]).stage_is_prod


@pytest.mark.parametrize("signed", [True, False])
def test_run_does_not_exist_in_prod(client: Any, orgs: Container, env: dict[str, str], signed: bool) -> None:
    orgs.settings = load_settings(env | {"WORKER_ENV": "prod"})
    kwargs = signed_post({}, orgs.now()) if signed else {"body": b"{}", "headers": {
        "Content-Type": "application/json"}}
    res = client.http.post("/run", **kwargs)
    assert res.status_code == 404 and res.json_body == {"error": "not found"}
    assert orgs.store.cursor("rollup") is None  # no rollup ran
    orgs.settings = load_settings(env)
    assert client.http.post("/run", **signed_post({}, orgs.now())).status_code == 200  # the same request in dev
    assert orgs.store.cursor("rollup") is not None  # which does leave a trace
