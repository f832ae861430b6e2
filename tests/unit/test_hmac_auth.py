from __future__ import annotations

import pytest

from chalicelib.core.hmac_auth import AuthError, candidate_queries, sign_body, sign_get, verify_body, verify_get


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


# --- issue 9, finding 1: the signature covers every parameter, in what standard encoders produce ---

PATH = "/internal/org-policy"


def _verify(query_signed: str, pairs: list[tuple[str, str]], path: str = PATH) -> None:
    headers = {"x-timestamp": "5", "x-signature": sign_get("k", 5, path, query_signed)}
    verify_get(headers, path, pairs, "k", 5)


def test_an_added_parameter_is_refused_even_after_four() -> None:
    signed = "org_id=X&a=1&b=2&c=3"
    _verify(signed, [("org_id", "X"), ("a", "1"), ("b", "2"), ("c", "3")])
    with pytest.raises(AuthError) as err:
        _verify(signed, [("org_id", "X"), ("a", "1"), ("b", "2"), ("c", "3"), ("cell_id", "evil")])
    assert err.value.status == 401
    with pytest.raises(AuthError):
        _verify("from=1&to=2", [("from", "1"), ("to", "2"), ("cell_id", "evil")], "/internal/usage-parity")


@pytest.mark.parametrize(
    "signed, pairs",
    [
        ("q=a+b", [("q", "a b")]),  # form encoding: + for a space
        ("q=a%20b", [("q", "a b")]),
        ("org_id=a%3ab", [("org_id", "a:b")]),  # lowercase hex
        ("org_id=a%3Ab", [("org_id", "a:b")]),
        ("a=1&b=2&c=3&d=4&e=5", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]),  # five
        ("a=1&b=2&c=3&d=4&e=5", [("e", "5"), ("d", "4"), ("c", "3"), ("b", "2"), ("a", "1")]),  # sorted keys
        ("a=1&a=2&b=3", [("a", "1"), ("a", "2"), ("b", "3")]),  # a repeated key
        ("from=1795564800&to=1795568400", [("to", "1795568400"), ("from", "1795564800")]),  # the cells' form
        ("org_id=org%3Aa%2Fb", [("org_id", "org:a/b")]),
        ("org_id=org:a/b", [("org_id", "org:a/b")]),
        ("v=%E2%82%AC%2B1", [("v", "€+1")]),
        ("v=%e2%82%ac%2b1", [("v", "€+1")]),
    ],
)
def test_standard_encodings_verify(signed: str, pairs: list[tuple[str, str]]) -> None:
    _verify(signed, pairs)


def test_a_rebuild_never_reads_one_signed_query_as_other_parameters() -> None:
    # Signed as two parameters; sent as one whose value holds "&b=2": not the same request.
    with pytest.raises(AuthError):
        _verify("a=1&b=2", [("a", "1&b=2")])
    with pytest.raises(AuthError):
        _verify("a=1+2", [("a", "1+2")])  # "+" meant a space when signed


def test_canonical_form() -> None:
    from chalicelib.core.hmac_auth import canonical_query

    assert canonical_query([("to", "2"), ("from", "1")]) == "from=1&to=2"
    assert canonical_query({"q": "a b+c/€"}) == "q=a%20b%2Bc%2F%E2%82%AC"
    assert canonical_query([("b", "1"), ("a", "3"), ("b", "0")]) == "a=3&b=1&b=0"
    pairs = [("b", "1"), ("a", "3"), ("b", "0")]
    assert canonical_query(pairs) in candidate_queries(pairs)


# --- finding 2: unsigned garbage in the auth headers is a 400/401, never an exception ---


@pytest.mark.parametrize(
    "headers",
    [
        {"x-timestamp": "1000", "x-signature": "é" * 64},
        {"x-timestamp": "1000", "x-signature": "zz"},
        {"x-timestamp": "¹", "x-signature": "0" * 64},
        {"x-timestamp": "9" * 5000, "x-signature": "0" * 64},
        {"x-timestamp": "\u0661\u0660\u0660\u0660", "x-signature": "0" * 64},  # Arabic-Indic digits: int() takes them
        {"x-timestamp": " 1000", "x-signature": "0" * 64},
    ],
)
def test_garbage_auth_headers_are_401(headers: dict[str, str]) -> None:
    for call in (
        lambda: verify_body(headers, b"[]", "k", 1000),
        lambda: verify_get(headers, PATH, {"org_id": "a"}, "k", 1000),
    ):
        with pytest.raises(AuthError) as err:
            call()
        assert err.value.status == 401


def test_unencodable_query_is_400() -> None:
    headers = {"x-timestamp": "5", "x-signature": "0" * 64}
    with pytest.raises(AuthError) as err:
        verify_get(headers, PATH, [("org_id", "\ud800")], "k", 5)
    assert err.value.status == 400
