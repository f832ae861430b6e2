"""The cell <-> edge HMAC scheme (CONTRACT section 1), as pure functions.

Written by hand because it is the cells' fixed wire protocol: no library
speaks exactly this message layout.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Mapping
from urllib.parse import quote


class AuthError(Exception):
    """Carries the HTTP status the contract asks for (400 missing, 401 bad)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(secret: str, timestamp: str, message: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + message, hashlib.sha256).hexdigest()


def sign_body(secret: str, timestamp: int | str, body: bytes) -> str:
    return sign(secret, str(timestamp), body)


def sign_get(secret: str, timestamp: int | str, path: str, raw_query: str = "") -> str:
    return sign(secret, str(timestamp), get_message(path, raw_query))


def get_message(path: str, raw_query: str) -> bytes:
    return (path + ("?" + raw_query if raw_query else "")).encode()


def _check_timestamp(headers: Mapping[str, str], now: int, window: int) -> tuple[str, str]:
    ts = headers.get("x-timestamp")
    sig = headers.get("x-signature")
    if not ts or not sig:
        raise AuthError(400, "missing X-Timestamp or X-Signature header")
    if not ts.isdigit():
        raise AuthError(401, "X-Timestamp must be unix seconds")
    if abs(now - int(ts)) > window:
        raise AuthError(401, f"X-Timestamp outside the {window}s window")
    return ts, sig


def verify_body(headers: Mapping[str, str], body: bytes, secret: str, now: int, window: int = 300) -> None:
    ts, sig = _check_timestamp(headers, now, window)
    if not hmac.compare_digest(sign(secret, ts, body), sig.lower()):
        raise AuthError(401, "bad signature")


def candidate_queries(params: Mapping[str, str]) -> list[str]:
    """Raw query strings a cell may have signed for these parameters.

    API Gateway's REST proxy event carries the query only as a parsed map, so
    the raw string is rebuilt; its order is not guaranteed, so every order of
    the (few) parameters is tried, with and without percent-encoding.
    """
    if not params:
        return [""]
    items = list(params.items())[:4]
    out: list[str] = []
    for perm in itertools.permutations(items):
        for enc in (lambda v: quote(v, safe=""), lambda v: v):
            q = "&".join(f"{enc(k)}={enc(v)}" for k, v in perm)
            if q not in out:
                out.append(q)
    return out


def verify_get(
    headers: Mapping[str, str], path: str, params: Mapping[str, str], secret: str, now: int, window: int = 300
) -> None:
    ts, sig = _check_timestamp(headers, now, window)
    ok = False
    for query in candidate_queries(params):
        # No early exit: every candidate costs the same, so timing says nothing.
        ok |= hmac.compare_digest(sign(secret, ts, get_message(path, query)), sig.lower())
    if not ok:
        raise AuthError(401, "bad signature")
