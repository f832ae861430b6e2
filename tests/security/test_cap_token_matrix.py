"""One cap-token matrix, the same tokens and the same verdicts, for both verifiers (issue 18, item 10):
the edge's (chalicelib/core/cap_tokens.py, behind its CLI and tests) and the cell kit's gate
(cellkit/core/captoken.py). Each rule of CONTRACT section 8 is a row; the clock leeway is 5 s either way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cellkit.core import captoken as cell
from chalicelib.core import cap_tokens as edge

SECRET = "cell-test-jwt-secret-of-32-bytes-or-more"
NOW = 1795564800
L = 5  # the documented leeway, seconds
Verdict = tuple[str, str, str] | None  # (org_id, plan, cell_id) when accepted


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**kw: Any) -> dict[str, Any]:
    return {"org_id": "org-1", "plan": "pro", "cell_id": "cell-a", "iat": NOW - 10, "exp": NOW + 290} | kw


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in claims().items() if k != name}


def hs(payload: dict[str, Any], secret: str = SECRET, header: dict[str, Any] | None = None) -> str:
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@cache
def matrix() -> dict[str, tuple[str, str, Verdict]]:
    """case -> (token, secret the verifier holds, verdict)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns the 40-byte secret is short for SHA-512: on purpose
        hs512 = jwt.encode(claims(), SECRET, algorithm="HS512")
    good = hs(claims())
    head, body, sig = good.split(".")
    ok: Verdict = ("org-1", "pro", "cell-a")
    short = "s" * 31
    rows: dict[str, tuple[str, Verdict]] = {
        "valid": (good, ok),
        "valid, free plan": (hs(claims(plan="free")), ("org-1", "free", "cell-a")),
        "minted by the edge's mint": (edge.mint(SECRET, "org-1", "pro", "cell-a", NOW), ok),
        "extra header fields": (hs(claims(), header={"alg": "HS256", "typ": "JWT", "kid": "k1"}), ok),
        # time, with the leeway: a cell clock a little behind the edge still accepts a fresh token
        "iat 1 s ahead (cell 300 ms behind)": (hs(claims(iat=NOW + 1, exp=NOW + 301)), ok),
        "iat at the leeway": (hs(claims(iat=NOW + L, exp=NOW + 300)), ok),
        "iat past the leeway": (hs(claims(iat=NOW + L + 1, exp=NOW + 300)), None),
        "nbf at the leeway": (hs(claims(nbf=NOW + L)), ok),
        "nbf past the leeway": (hs(claims(nbf=NOW + L + 1)), None),
        "expired within the leeway": (hs(claims(exp=NOW - L + 1)), ok),
        "expired at the leeway": (hs(claims(exp=NOW - L)), None),
        "expired long ago": (hs(claims(iat=NOW - 400, exp=NOW - 100)), None),
        "lifetime exactly an hour": (hs(claims(iat=NOW - 10, exp=NOW + 3590)), ok),
        "lifetime over an hour": (hs(claims(iat=NOW - 10, exp=NOW + 3591)), None),
        "iat not an integer": (hs(claims(iat="soon")), None),
        # algorithm and signature
        "alg none": (f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims()).encode())}.", None),
        "alg none with a signature": (hs(claims(), header={"alg": "none"}), None),
        "alg None spelled otherwise": (hs(claims(), header={"alg": "None"}), None),
        "RS256 signed with a real key": (jwt.encode(claims(), key, algorithm="RS256"), None),
        "RS256 header, HMAC by the public key": (hs(claims(), public.decode(), header={"alg": "RS256"}), None),
        # The classic confusion: HS256 keyed with the public key a verifier might hold for RS256.
        "HS256 keyed with the RSA public key": (hs(claims(), public.decode()), None),
        "HS512 with the right secret": (hs512, None),
        "tampered payload": (f"{head}.{b64(json.dumps(claims(org_id='org-2')).encode())}.{sig}", None),
        "tampered signature": (f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}", None),
        "another secret": (hs(claims(), "another-secret-that-is-32-bytes-long!!"), None),
        "not a JWT": ("not.a.jwt", None),
        "empty": ("", None),
        # claims
        "another cell": (hs(claims(cell_id="cell-b")), None),
        "cell_id not a string": (hs(claims(cell_id=7)), None),
        "no cell_id": (hs(without("cell_id")), None),
        "no org_id": (hs(without("org_id")), None),
        "no plan": (hs(without("plan")), None),
        "no iat": (hs(without("iat")), None),
        "no exp": (hs(without("exp")), None),
        "plan outside pro/free": (hs(claims(plan="enterprise")), None),
        "empty org_id": (hs(claims(org_id="")), None),
        "org_id not a string": (hs(claims(org_id=7)), None),
    }
    out = {case: (token, SECRET, verdict) for case, (token, verdict) in rows.items()}
    out["secret under 32 bytes (even when it signed the token)"] = (hs(claims(), short), short, None)
    return out


def edge_verify(token: str, secret: str, now: int, cell_id: str) -> Verdict:
    try:
        got = edge.verify(token, secret, now, cell_id)
    except edge.CapTokenError:
        return None
    return got.org_id, got.plan, got.cell_id


def cell_verify(token: str, secret: str, now: int, cell_id: str) -> Verdict:
    try:
        got = cell.verify(token, secret, now, cell_id)
    except cell.CapTokenInvalid:
        return None
    return got.org_id, got.plan, got.cell_id


VERIFIERS: dict[str, Callable[[str, str, int, str], Verdict]] = {"edge": edge_verify, "cell": cell_verify}


@pytest.mark.parametrize("verifier", sorted(VERIFIERS))
@pytest.mark.parametrize("case", sorted(matrix()))
def test_both_verifiers_give_the_same_verdict(verifier: str, case: str) -> None:
    token, secret, verdict = matrix()[case]
    assert VERIFIERS[verifier](token, secret, NOW, "cell-a") == verdict


def test_the_rules_are_one_set() -> None:
    assert (edge.LEEWAY_SECONDS, edge.MAX_TTL_SECONDS, edge.MIN_SECRET_BYTES, edge.ALGORITHM) == (
        cell.LEEWAY_SECONDS, cell.MAX_TTL_SECONDS, cell.MIN_SECRET_BYTES, cell.ALGORITHM) == (L, 3600, 32, "HS256")
