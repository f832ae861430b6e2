"""The cap-token matrix: only an unexpired HS256 token for this cell, untampered, passes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cellkit.core.captoken import CapTokenInvalid, verify
from chalicelib.core.cap_tokens import mint

SECRET = "cell-test-jwt-secret-of-32-bytes-or-more"
NOW = 1795564800


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**kw: Any) -> dict[str, Any]:
    return {"org_id": "org-1", "plan": "pro", "cell_id": "cell-a", "iat": NOW - 10, "exp": NOW + 290} | kw


def hs(payload: dict[str, Any], secret: str = SECRET, header: dict[str, Any] | None = None) -> str:
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_the_edges_token_verifies() -> None:
    token = mint(SECRET, "org-1", "pro", "cell-a", NOW - 10)
    got = verify(token, SECRET, NOW, "cell-a")
    assert (got.org_id, got.plan, got.cell_id, got.exp) == ("org-1", "pro", "cell-a", NOW + 290)


def _rsa_pair() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public


def hs512() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that our 40-byte secret is short for SHA-512: on purpose
        return jwt.encode(claims(), SECRET, algorithm="HS512")


@cache
def rejected_tokens() -> dict[str, str]:
    key, public = _rsa_pair()
    none_token = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims()).encode())}."
    good = hs(claims())
    head, body, sig = good.split(".")
    tampered_body = b64(json.dumps(claims(plan="pro", org_id="org-2")).encode())
    return {
        "alg none": none_token,
        "alg none with a signature": hs(claims(), header={"alg": "none"}),
        "RS256 signed with a real key": jwt.encode(claims(), key, algorithm="RS256"),
        # The confusion attack: the public key used as an HMAC secret under an RS256 header.
        "RS256 header, HMAC by the public key": hs(claims(), public.decode(), header={"alg": "RS256"}),
        "HS512": hs512(),
        "expired": hs(claims(iat=NOW - 400, exp=NOW - 100)),
        "expires now": hs(claims(exp=NOW)),
        "not yet valid (nbf)": hs(claims(nbf=NOW + 60)),
        "issued in the future": hs(claims(iat=NOW + 60, exp=NOW + 120)),
        "lifetime over an hour": hs(claims(iat=NOW - 10, exp=NOW + 3600)),
        "wrong cell": hs(claims(cell_id="cell-b")),
        "no cell": hs({k: v for k, v in claims().items() if k != "cell_id"}),
        "no exp": hs({k: v for k, v in claims().items() if k != "exp"}),
        "bad plan": hs(claims(plan="enterprise")),
        "tampered payload": f"{head}.{tampered_body}.{sig}",
        "tampered signature": f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
        "other secret": hs(claims(), "another-secret-that-is-32-bytes-long!!"),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("case", sorted(rejected_tokens()))
def test_rejected(case: str) -> None:
    with pytest.raises(CapTokenInvalid):
        verify(rejected_tokens()[case], SECRET, NOW, "cell-a")


def test_short_secret_refused() -> None:
    with pytest.raises(CapTokenInvalid, match="32 bytes"):
        verify(hs(claims(), "short"), "short", NOW, "cell-a")
