from __future__ import annotations

import pytest

from chalicelib.hmac_auth import AuthError, candidate_queries, sign_body, sign_get, verify_body, verify_get


def test_body_signature_round_trip() -> None:
    sig = sign_body("k", 1000, b"[]")
    verify_body({"x-timestamp": "1000", "x-signature": sig}, b"[]", "k", 1000)
    with pytest.raises(AuthError) as err:
        verify_body({"x-timestamp": "1000", "x-signature": sig}, b"[ ]", "k", 1000)
    assert err.value.status == 401


def test_known_vector() -> None:
    # HMAC-SHA256("k", "1000.[]") computed independently with openssl.
    assert sign_body("k", 1000, b"[]") == "bf8c6e19552dd48b929b54d06d80a6799aa55237b914a8049edeacf1c2aa3d17"


@pytest.mark.parametrize("delta, ok", [(300, True), (-300, True), (301, False), (-301, False)])
def test_time_window(delta: int, ok: bool) -> None:
    sig = sign_body("k", 1000, b"x")
    headers = {"x-timestamp": "1000", "x-signature": sig}
    if ok:
        verify_body(headers, b"x", "k", 1000 + delta)
    else:
        with pytest.raises(AuthError, match="window"):
            verify_body(headers, b"x", "k", 1000 + delta)


def test_missing_headers_are_400() -> None:
    with pytest.raises(AuthError) as err:
        verify_body({"x-timestamp": "1"}, b"", "k", 1)
    assert err.value.status == 400


def test_get_signature_covers_path_and_query() -> None:
    sig = sign_get("k", 5, "/internal/usage-parity", "from=1&to=2")
    headers = {"x-timestamp": "5", "x-signature": sig}
    verify_get(headers, "/internal/usage-parity", {"from": "1", "to": "2"}, "k", 5)
    verify_get(headers, "/internal/usage-parity", {"to": "2", "from": "1"}, "k", 5)
    with pytest.raises(AuthError):
        verify_get(headers, "/internal/usage-parity", {"from": "1", "to": "3"}, "k", 5)
    with pytest.raises(AuthError):
        verify_get(headers, "/internal/org-policy", {"from": "1", "to": "2"}, "k", 5)


def test_candidate_queries_include_encoded_form() -> None:
    assert "org_id=a%3Ab" in candidate_queries({"org_id": "a:b"})
    assert candidate_queries({}) == [""]
