"""Cap-tokens on the edge side (chalicelib/cap_tokens.py): the attacks a cell's gate must never let through.

The cell kit's gate has its own matrix (tests/cellkit/core/test_captoken.py); this one holds the
edge's `verify` (used by the CLI and the tests that check what the edge mints) to the same rules.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.core.cap_tokens import MAX_TTL_SECONDS, CapTokenError, mint, verify

SECRET = "edge-session-jwt-secret-of-at-least-32-bytes!"
NOW = 1_795_572_000
CLAIMS: dict[str, Any] = {"org_id": "org-a", "plan": "pro", "cell_id": "cell-eu", "iat": NOW - 10, "exp": NOW + 290}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_fresh_token_for_this_cell_verifies() -> None:
    token = mint(SECRET, "org-a", "pro", "cell-eu", NOW)
    got = verify(token, SECRET, NOW, "cell-eu")
    assert (got.org_id, got.plan, got.cell_id, got.exp - got.iat) == ("org-a", "pro", "cell-eu", 300)


def attacks(rsa_key: rsa.RSAPrivateKey) -> dict[str, str]:
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    good = jwt.encode(CLAIMS, SECRET, algorithm="HS256")
    head, body, sig = good.split(".")
    return {
        "alg none, no signature": forged({"alg": "none", "typ": "JWT"}, CLAIMS),
        "alg None spelled otherwise": forged({"alg": "None", "typ": "JWT"}, CLAIMS),
        "RS256 signed with a real RSA key": jwt.encode(CLAIMS, rsa_key, algorithm="RS256"),
        # The classic confusion: HS256 keyed with the public key a verifier might hold for RS256.
        "HS256 keyed with the RSA public key": forged(
            {"alg": "HS256", "typ": "JWT"}, CLAIMS,
            jwt.get_algorithm_by_name("HS256").sign(
                f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
                f"{b64(json.dumps(CLAIMS).encode())}".encode(), public_pem)),
        "RS256 header over an HMAC signature": forged(
            {"alg": "RS256", "typ": "JWT"}, CLAIMS, base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))),
        "HS512 with the right secret": jwt.encode(CLAIMS, SECRET, algorithm="HS512"),
        "expired": jwt.encode(CLAIMS | {"iat": NOW - 400, "exp": NOW - 100}, SECRET, algorithm="HS256"),
        "expiring this second": jwt.encode(CLAIMS | {"exp": NOW}, SECRET, algorithm="HS256"),
        "not yet valid (iat ahead)": jwt.encode(CLAIMS | {"iat": NOW + 60, "exp": NOW + 360}, SECRET,
                                                algorithm="HS256"),
        "not yet valid (nbf ahead)": jwt.encode(CLAIMS | {"nbf": NOW + 60}, SECRET, algorithm="HS256"),
        "lifetime over an hour": jwt.encode(CLAIMS | {"exp": CLAIMS["iat"] + MAX_TTL_SECONDS + 1}, SECRET,
                                            algorithm="HS256"),
        "wrong cell": jwt.encode(CLAIMS | {"cell_id": "cell-us"}, SECRET, algorithm="HS256"),
        "no cell": jwt.encode({k: v for k, v in CLAIMS.items() if k != "cell_id"}, SECRET, algorithm="HS256"),
        "tampered claims (org_id changed, signature kept)": ".".join(
            [head, b64(json.dumps(CLAIMS | {"org_id": "org-b"}).encode()), sig]),
        "tampered signature": f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
        "signed with another secret": jwt.encode(CLAIMS, SECRET + "x", algorithm="HS256"),
        "plan outside pro/free": jwt.encode(CLAIMS | {"plan": "enterprise"}, SECRET, algorithm="HS256"),
        "org_id not a string": jwt.encode(CLAIMS | {"org_id": 7}, SECRET, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in CLAIMS.items() if k != "exp"}, SECRET, algorithm="HS256"),
        "not a JWT": "not.a.jwt",
        "empty": "",
    }


def test_every_attack_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    accepted = []
    for name, token in attacks(rsa_key).items():
        try:
            verify(token, SECRET, NOW, "cell-eu")
        except CapTokenError:
            continue
        accepted.append(name)
    assert accepted == []


def test_the_clock_is_the_injected_one_not_the_machines() -> None:
    # Minted for a `now` far from the wall clock: valid exactly within [iat, exp) of the injected clock.
    far = 4_000_000_000
    token = mint(SECRET, "org-a", "free", "cell-eu", far, ttl=60)
    assert verify(token, SECRET, far + 59, "cell-eu").plan == "free"
    for at in (far - 1, far + 60):
        with pytest.raises(CapTokenError):
            verify(token, SECRET, at, "cell-eu")


def test_mint_refuses_a_short_secret_and_a_long_lifetime() -> None:
    with pytest.raises(CapTokenError, match="32 bytes"):
        mint("short", "org-a", "pro", "cell-eu", NOW)
    with pytest.raises(CapTokenError, match="ttl"):
        mint(SECRET, "org-a", "pro", "cell-eu", NOW, ttl=MAX_TTL_SECONDS + 1)
