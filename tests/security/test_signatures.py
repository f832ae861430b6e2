"""Signatures at the edge (issue 13, security): the cell HMAC and Stripe's webhook signature.

Replays outside the window, signatures for another body, path or query, several `v1` entries,
and the comparison itself: constant-time, shown by which comparisons run (a profiler hook),
never by timing, which on a shared machine proves nothing.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import stripe

import chalicelib.core.hmac_auth as hmac_auth
from chalicelib.adapters.clock import FixedClock
from chalicelib.bootstrap import Container
from chalicelib.core.hmac_auth import AuthError, candidate_queries, sign_body, sign_get, verify_body, verify_get
from chalicelib.core.orgs import Org
from tests.conftest import BASE_ENV, SECRET, T0, iso, signed_get, signed_post, tick

WHSEC = BASE_ENV["STRIPE_WEBHOOK_SECRET"]
PARITY, POLICY = "/internal/usage-parity", "/internal/org-policy"


def compare_digest_calls(fn: Callable[[], Any]) -> list[tuple[Any, ...]]:
    """Run `fn`, recording every call of hmac.compare_digest (a C function: seen as a profiler c_call)."""
    seen: list[tuple[Any, ...]] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and arg is hmac.compare_digest:
            seen.append(())

    sys.setprofile(profile)
    try:
        fn()
    except (AuthError, stripe.SignatureVerificationError):
        pass
    finally:
        sys.setprofile(None)
    return seen


# --- the cell HMAC, as functions ----------------------------------------------------------------


@pytest.mark.parametrize("skew", [-3600, -301, 301, 86400])
def test_a_captured_request_replayed_outside_the_window_is_refused(skew: int) -> None:
    sig = sign_body(SECRET, 1000, b"[]")
    verify_body({"x-timestamp": "1000", "x-signature": sig}, b"[]", SECRET, 1000 + 300)  # the edge of the window
    with pytest.raises(AuthError) as err:
        verify_body({"x-timestamp": "1000", "x-signature": sig}, b"[]", SECRET, 1000 + skew)
    assert err.value.status == 401


def test_a_signature_is_for_one_body_one_path_one_query() -> None:
    body_sig = sign_body(SECRET, 50, b'[{"id":"a"}]')
    for other in (b'[{"id":"b"}]', b'[{"id":"a"}] ', b""):
        with pytest.raises(AuthError):
            verify_body({"x-timestamp": "50", "x-signature": body_sig}, other, SECRET, 50)
    # Re-timestamped: the timestamp is inside the message.
    with pytest.raises(AuthError):
        verify_body({"x-timestamp": "51", "x-signature": body_sig}, b'[{"id":"a"}]', SECRET, 50)
    get_sig = {"x-timestamp": "50", "x-signature": sign_get(SECRET, 50, PARITY, "from=1&to=2")}
    verify_get(get_sig, PARITY, {"from": "1", "to": "2"}, SECRET, 50)
    for path, params in ((POLICY, {"from": "1", "to": "2"}), (PARITY, {"from": "1", "to": "3"}),
                         (PARITY, {"from": "1", "to": "2", "org_id": "x"}), (PARITY, {"from": "1"})):
        with pytest.raises(AuthError) as err:
            verify_get(get_sig, path, params, SECRET, 50)
        assert err.value.status == 401, (path, params)
    # A GET signature is not a body signature for the same bytes, nor the other way round.
    with pytest.raises(AuthError):
        verify_body(get_sig, b"/internal/usage-parity?from=1&to=2", SECRET + "x", 50)


def test_body_check_is_one_constant_time_comparison_whatever_the_signature() -> None:
    right = sign_body(SECRET, 7, b"x")
    wrong_first = ("0" if right[0] != "0" else "1") + right[1:]
    wrong_last = right[:-1] + ("0" if right[-1] != "0" else "1")
    for sig in (right, wrong_first, wrong_last):
        calls = compare_digest_calls(partial(verify_body, {"x-timestamp": "7", "x-signature": sig}, b"x", SECRET, 7))
        assert len(calls) == 1, sig


def test_get_check_compares_every_candidate_without_early_exit() -> None:
    params = {"from": "1", "to": "2", "org_id": "a b"}
    n = len(candidate_queries(params))
    assert n > 1
    for query in (candidate_queries(params)[0], candidate_queries(params)[-1], "nothing=signed"):
        sig = sign_get(SECRET, 9, PARITY, query)
        calls = compare_digest_calls(partial(verify_get, {"x-timestamp": "9", "x-signature": sig}, PARITY, params,
                                             SECRET, 9))
        assert len(calls) == n, query  # the same work whether the first, the last or no candidate matches


def test_no_signature_is_compared_with_ordinary_equality() -> None:
    # `==` on strings stops at the first differing byte; only compare_digest may touch a signature.
    tree = ast.parse(inspect.getsource(hmac_auth))
    suspicious = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn)
                                                 for op in node.ops):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
                n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            if any("sig" in name or "digest" in name or "mac" in name for name in names):
                suspicious.append(ast.unparse(node))
    assert suspicious == []


def test_stripe_check_uses_a_constant_time_comparison() -> None:
    payload = b'{"id":"evt_1"}'
    header = f"t=100,v1={hmac.new(WHSEC.encode(), b'100.' + payload, hashlib.sha256).hexdigest()}"
    calls = compare_digest_calls(lambda: stripe.WebhookSignature.verify_header(payload, header, WHSEC, None))
    assert calls  # stripe-python's secure_compare is hmac.compare_digest


# --- the same through the app -------------------------------------------------------------------


@pytest.fixture
def orgs(svc: Container) -> Container:
    svc.store.put_org(Org("org-pro", plan="pro", billing_mode="legacy", stripe_customer_id="cus_pro"))
    return svc


def test_a_replayed_ingest_is_refused_once_the_window_passed(client: Any, orgs: Container, clock: FixedClock) -> None:
    now = orgs.now()
    captured = signed_post([tick("replayed-1", "org-pro", iso(now - 100))], now)
    clock.advance(301)
    res = client.http.post("/ingest", **captured)
    assert res.status_code == 401 and "window" in res.json_body["error"]
    assert orgs.store.cursor("rollup") is None
    clock.advance(-301)
    assert client.http.post("/ingest", **captured).status_code == 202  # the same bytes, inside the window


def test_signed_gets_refuse_another_path_query_or_added_parameter(client: Any, orgs: Container) -> None:
    now = orgs.now()
    query = f"from={T0}&to={T0 + 3600}"
    orgs.store.save_aggregates(T0, [], {})  # settled: the signed request is answered 200
    headers = signed_get(PARITY, query, now)
    assert client.http.get(f"{PARITY}?{query}", headers=headers).status_code == 200
    for url in (f"{PARITY}?from={T0}&to={T0 + 7200}", f"{PARITY}?{query}&org_id=org-pro",
                f"{POLICY}?{query}", f"/internal/parity-reports?{query}", f"/internal/cells?{query}"):
        res = client.http.get(url, headers=headers)
        assert res.status_code == 401 and res.json_body["error"], url


def test_a_body_signature_for_another_route_body_is_refused(client: Any, orgs: Container) -> None:
    good = signed_post({"billing_mode": "unified"}, orgs.now())
    res = client.http.put("/internal/orgs/org-pro", body=b'{"billing_mode":"legacy"}', headers=good["headers"])
    assert res.status_code == 401
    assert orgs.store.get_org("org-pro").billing_mode == "legacy"  # type: ignore[union-attr]


# --- Stripe's webhook signature -----------------------------------------------------------------


def stripe_v1(payload: bytes, secret: str, at: int) -> str:
    return hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()


@pytest.fixture
def event() -> bytes:
    # An event type the edge acknowledges and ignores: only the signature decides the answer.
    return json.dumps({"id": "evt_sig", "type": "invoice.paid", "created": T0, "data": {"object": {}}}).encode()


def stripe_cases(payload: bytes, now: int) -> Iterator[tuple[str, str, int]]:
    good = stripe_v1(payload, WHSEC, now)
    bad = stripe_v1(payload, "whsec_other", now)
    yield "valid", f"t={now},v1={good}", 200
    yield "stale (301 s old)", f"t={now - 301},v1={stripe_v1(payload, WHSEC, now - 301)}", 400
    yield "from the future (301 s)", f"t={now + 301},v1={stripe_v1(payload, WHSEC, now + 301)}", 400
    yield "wrong secret", f"t={now},v1={bad}", 400
    yield "another payload", f"t={now},v1={stripe_v1(payload + b' ', WHSEC, now)}", 400
    yield "re-timestamped", f"t={now + 1},v1={good}", 400
    yield "several v1, one valid (a secret being rolled)", f"t={now},v1={bad},v1={good}", 200
    yield "several v1, valid first", f"t={now},v1={good},v1={'0' * 64}", 200
    yield "several v1, all invalid", f"t={now},v1={bad},v1={'0' * 64}", 400
    yield "only a v0 (test scheme) entry", f"t={now},v0={good}", 400
    yield "no timestamp", f"v1={good}", 400


def test_stripe_signatures_as_stripes_own_library_decides(client: Any, orgs: Container, event: bytes) -> None:
    now = orgs.now()
    for name, header, status in stripe_cases(event, now):
        res = client.http.post("/webhooks/stripe", body=event,
                               headers={"Content-Type": "application/json", "Stripe-Signature": header})
        assert res.status_code == status, (name, res.body[:200])
        if status != 200:
            assert "signature" in res.json_body["error"].lower(), name
        # Stripe's own verdict, at the same moment, agrees (stripe-python with the edge's tolerance).
        try:
            stripe.WebhookSignature.verify_header(event, header, WHSEC, None)
            lib_ok = abs(now - int(header.split(",")[0].removeprefix("t="))) <= 300
        except (stripe.SignatureVerificationError, ValueError):
            lib_ok = False
        assert lib_ok == (status == 200), name
