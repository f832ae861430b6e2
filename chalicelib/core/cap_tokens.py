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
# Clocks of the edge and a cell differ by a little (a cell 300 ms behind saw a token minted "next second"):
# iat and nbf may be this far ahead, exp this far behind. Seconds, not minutes: a token stays short-lived.
LEEWAY_SECONDS = 5


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


# The edge's verifier checks what the edge mints (the route's and `cap-token mint`'s tests read tokens back
# with it); the cells' own is cellkit/core/captoken.py. The two products never import each other, so the rules
# are written on each side of the wire; tests/security/test_cap_token_matrix.py holds both to one verdict.
def verify(token: str, secret: str, now: int, cell_id: str | None = None) -> CapToken:
    """Check secret, algorithm, signature, claims, time (against `now`) and, if given, the cell it was minted for.

    The same rules, case for case, as the cell kit's gate (cellkit/core/captoken.py; one test matrix runs
    both: tests/security/test_cap_token_matrix.py): HS256 pinned, so `alg: none` and RS/ES tokens never
    reach a key; `org_id`, `plan`, `cell_id`, `iat`, `exp` required; every time claim checked against the
    injected clock with LEEWAY_SECONDS either way, never PyJWT's wall clock.
    """
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise CapTokenError(f"SESSION_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    try:
        if jwt.get_unverified_header(token).get("alg") != ALGORITHM:
            raise CapTokenError(f"cap-token algorithm is not {ALGORITHM}")
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "iat", "org_id", "plan", "cell_id"]},
        )
    except jwt.PyJWTError as exc:
        raise CapTokenError(f"invalid cap-token: {exc}") from None
    iat, exp = _times(claims, now)
    if not isinstance(claims["cell_id"], str) or (cell_id is not None and claims["cell_id"] != cell_id):
        raise CapTokenError("cap-token was minted for another cell")
    if claims["plan"] not in ("pro", "free") or not isinstance(claims["org_id"], str) or not claims["org_id"]:
        raise CapTokenError("cap-token lacks org_id or plan")
    return CapToken(claims["org_id"], claims["plan"], claims["cell_id"], iat, exp)


def _times(claims: dict[str, Any], now: int) -> tuple[int, int]:
    try:
        iat, exp = int(claims["iat"]), int(claims["exp"])
        nbf = int(claims.get("nbf", iat))
    except (TypeError, ValueError):
        raise CapTokenError("cap-token time claims must be integers") from None
    if exp <= now - LEEWAY_SECONDS:
        raise CapTokenError("cap-token expired")
    if iat > now + LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
        raise CapTokenError("cap-token is not valid yet")
    if exp - iat > MAX_TTL_SECONDS:
        raise CapTokenError(f"cap-token lifetime exceeds {MAX_TTL_SECONDS} s")
    return iat, exp
