"""Capability tokens: short-lived HS256 JWTs carrying the plan the edge just resolved for an org.

A cell running with PRO_BILLING_AUTHORITY=edge creates pro sandboxes only with
such a token. PyJWT does the signing and checking; claims: org_id, plan,
cell_id, iat, exp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from chalicelib.core.orgs import Plan

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 300
MAX_TTL_SECONDS = 3600
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class CapToken:
    org_id: str
    plan: Plan
    cell_id: str
    iat: int
    exp: int


class CapTokenError(ValueError):
    pass


def mint(secret: str, org_id: str, plan: Plan, cell_id: str, now: int, ttl: int = DEFAULT_TTL_SECONDS) -> str:
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise CapTokenError(f"ttl must be within 1..{MAX_TTL_SECONDS} s, got {ttl}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise CapTokenError(f"SESSION_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    claims = {"org_id": org_id, "plan": plan, "cell_id": cell_id, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str, now: int, cell_id: str | None = None) -> CapToken:
    """Check algorithm, signature, time claims (against `now`) and, if given, the cell it was minted for.

    The same rules as the cell kit's gate (cellkit/core/captoken.py): HS256 pinned, so `alg: none`
    and RS/ES tokens never reach a key; every time claim is checked against the injected clock,
    never PyJWT's wall clock, so a token minted for later is refused whatever the machine's time.
    """
    try:
        if jwt.get_unverified_header(token).get("alg") != ALGORITHM:
            raise CapTokenError(f"cap-token algorithm is not {ALGORITHM}")
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise CapTokenError(f"invalid cap-token: {exc}") from None
    iat, exp = _times(claims, now)
    if cell_id is not None and claims.get("cell_id") != cell_id:
        raise CapTokenError("cap-token was minted for another cell")
    if claims.get("plan") not in ("pro", "free") or not isinstance(claims.get("org_id"), str) or not claims["org_id"]:
        raise CapTokenError("cap-token lacks org_id or plan")
    return CapToken(claims["org_id"], claims["plan"], str(claims.get("cell_id", "")), iat, exp)


def _times(claims: dict[str, Any], now: int) -> tuple[int, int]:
    try:
        iat, exp = int(claims["iat"]), int(claims["exp"])
        nbf = int(claims.get("nbf", iat))
    except (TypeError, ValueError):
        raise CapTokenError("cap-token time claims must be integers") from None
    if exp <= now:
        raise CapTokenError("cap-token expired")
    if iat > now or nbf > now:
        raise CapTokenError("cap-token is not valid yet")
    if exp - iat > MAX_TTL_SECONDS:
        raise CapTokenError(f"cap-token lifetime exceeds {MAX_TTL_SECONDS} s")
    return iat, exp
