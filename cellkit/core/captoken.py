"""Cap-token verification (CONTRACT section 8): HS256 only, own cell, unexpired.

PyJWT checks the signature with ``algorithms=["HS256"]`` pinned, which rejects
``alg: none`` and every RS/ES token outright (no key-type confusion: an RS256
header never reaches a verifier that could treat the secret as a public key).
Time claims are checked here against the injected ``now``, not the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
MAX_TTL_SECONDS = 3600
MIN_SECRET_BYTES = 32
# The edge's and this cell's clocks differ by a little: iat and nbf may be this far ahead, exp this far
# behind (the same rule as the edge's verifier, chalicelib/core/cap_tokens.py; one matrix tests both).
LEEWAY_SECONDS = 5


class CapTokenInvalid(ValueError):
    pass


@dataclass(frozen=True)
class CapToken:
    org_id: str
    plan: str
    cell_id: str
    iat: int
    exp: int


def _claims(token: str, secret: str) -> dict[str, Any]:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise CapTokenInvalid(f"SESSION_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise CapTokenInvalid(f"cap-token algorithm {header.get('alg')!r} is not {ALGORITHM}")
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "iat", "org_id", "plan", "cell_id"]},
        )
    except jwt.PyJWTError as exc:
        raise CapTokenInvalid(f"invalid cap-token: {exc}") from None
    return claims


def _check_times(claims: dict[str, Any], now: int) -> tuple[int, int]:
    try:
        iat, exp = int(claims["iat"]), int(claims["exp"])
        nbf = int(claims.get("nbf", iat))
    except (TypeError, ValueError):
        raise CapTokenInvalid("cap-token time claims must be integers") from None
    if exp <= now - LEEWAY_SECONDS:
        raise CapTokenInvalid("cap-token expired")
    if nbf > now + LEEWAY_SECONDS or iat > now + LEEWAY_SECONDS:
        raise CapTokenInvalid("cap-token is not valid yet")
    if exp - iat > MAX_TTL_SECONDS:
        raise CapTokenInvalid(f"cap-token lifetime exceeds {MAX_TTL_SECONDS} s")
    return iat, exp


def verify(token: str, secret: str, now: int, cell_id: str) -> CapToken:
    claims = _claims(token, secret)
    iat, exp = _check_times(claims, now)
    if not isinstance(claims["cell_id"], str) or claims["cell_id"] != cell_id:
        raise CapTokenInvalid("cap-token was minted for another cell")
    if claims["plan"] not in ("pro", "free") or not isinstance(claims["org_id"], str) or not claims["org_id"]:
        raise CapTokenInvalid("cap-token lacks a valid org_id or plan")
    return CapToken(claims["org_id"], claims["plan"], cell_id, iat, exp)
