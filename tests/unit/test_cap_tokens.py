"""Cap-tokens: HS256 JWTs with org, plan and cell; expiry against the injected clock."""

from __future__ import annotations

import jwt
import pytest

from chalicelib.core.cap_tokens import CapTokenError, mint, verify

SECRET = "s3cret-" + "x" * 32


def test_round_trip_carries_the_claims() -> None:
    token = mint(SECRET, "org1", "pro", "cell-a", now=1000, ttl=60)
    got = verify(token, SECRET, now=1059, cell_id="cell-a")
    assert (got.org_id, got.plan, got.cell_id, got.iat, got.exp) == ("org1", "pro", "cell-a", 1000, 1060)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize(
    "secret, now, cell, why",
    [
        ("other-" + "y" * 32, 1001, None, "invalid"),
        (SECRET, 1065, None, "expired"),  # exp 1060 plus the 5 s leeway
        (SECRET, 1001, "cell-b", "another cell"),
    ],
)
def test_rejections(secret: str, now: int, cell: str | None, why: str) -> None:
    token = mint(SECRET, "org1", "free", "cell-a", now=1000, ttl=60)
    with pytest.raises(CapTokenError, match=why):
        verify(token, secret, now=now, cell_id=cell)


def test_alg_none_is_refused() -> None:
    forged = jwt.encode({"org_id": "o", "plan": "pro", "iat": 1, "exp": 10**10}, key=None, algorithm="none")
    with pytest.raises(CapTokenError):
        verify(forged, SECRET, now=2)


def test_short_secret_is_refused() -> None:
    with pytest.raises(CapTokenError, match="32 bytes"):
        mint("short", "org1", "pro", "cell-a", now=1)


@pytest.mark.parametrize("ttl", [0, -5, 3601])
def test_ttl_is_bounded(ttl: int) -> None:
    with pytest.raises(CapTokenError):
        mint(SECRET, "org1", "pro", "cell-a", now=1, ttl=ttl)
