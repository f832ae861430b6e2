"""The cell <-> edge HMAC scheme (CONTRACT section 1), as pure functions.

Written by hand because it is the cells' fixed wire protocol: no library
speaks exactly this message layout.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


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


def _check_timestamp(headers: Mapping[str, str], now: int, window: int) -> tuple[str, bytes]:
    ts = headers.get("x-timestamp")
    sig = headers.get("x-signature")
    if not ts or not sig:
        raise AuthError(400, "missing X-Timestamp or X-Signature header")
    # ASCII digits only: str.isdigit() also accepts "¹" and other digits int() refuses,
    # and a 5,000-digit value is beyond int()'s limit; 12 digits reach the year 33,000.
    if not _TIMESTAMP.fullmatch(ts):
        raise AuthError(401, "X-Timestamp must be unix seconds (1 to 12 ASCII digits)")
    if abs(now - int(ts)) > window:
        raise AuthError(401, f"X-Timestamp outside the {window}s window")
    # Checked before comparing: compare_digest raises TypeError on non-ASCII text.
    if not _SIGNATURE.fullmatch(sig):
        raise AuthError(401, "bad signature")
    return ts, sig.lower().encode()


def verify_body(headers: Mapping[str, str], body: bytes, secret: str, now: int, window: int = 300) -> None:
    ts, sig = _check_timestamp(headers, now, window)
    if not hmac.compare_digest(sign(secret, ts, body).encode(), sig):
        raise AuthError(401, "bad signature")


QueryParams = Mapping[str, str] | Sequence[tuple[str, str]]

# The characters each common encoder leaves as they are (everything else is percent-encoded):
_SAFE_SETS = (
    "-._~",  # RFC 3986 unreserved: Python quote(safe=""), urlencode(quote_via=quote), Go, AWS SigV4
    "*-._",  # WHATWG form encoding: URLSearchParams, Java URLEncoder
    "-_.!~*'()",  # JavaScript encodeURIComponent
    "-._~/",  # Python quote() with its default safe="/"
    # Only what must be escaped to stay unambiguous (%, &, =, +, #, space): the cells' plain
    # `from=F&to=T` and raw ids like `org:a/b`. Every set escapes those, so each rebuild
    # decodes back to exactly the parameters received: no signature can be re-read as others.
    "".join(c for c in map(chr, range(33, 127)) if c not in "%&=+#"),
)
_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")
# Parameters are tried in every key order up to this many distinct keys (API Gateway's
# parsed map does not promise the query's order); beyond it, as received and sorted.
MAX_PERMUTED_KEYS = 4
MAX_QUERY_PAIRS = 16


def _encode(text: str, safe: str, plus: bool, lower: bool) -> str:
    out = quote(text, safe=safe + (" " if plus else ""))
    if plus:
        out = out.replace(" ", "+")
    return _PERCENT_HEX.sub(lambda m: m.group(0).lower(), out) if lower else out


def query_pairs(params: QueryParams) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def canonical_query(params: QueryParams) -> str:
    """The form signers should use: keys sorted, a repeated key's values in the order sent,
    RFC 3986 percent-encoding with uppercase hex and %20 for a space."""
    pairs = sorted(query_pairs(params), key=lambda kv: kv[0])
    return "&".join(f"{_encode(k, '-._~', False, False)}={_encode(v, '-._~', False, False)}" for k, v in pairs)


def _orders(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    groups: dict[str, list[str]] = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(value)
    keys = list(groups)
    key_orders = list(itertools.permutations(keys)) if len(keys) <= MAX_PERMUTED_KEYS else [keys, sorted(keys)]
    return [[(k, v) for k in order for v in groups[k]] for order in key_orders]


def candidate_queries(params: QueryParams) -> list[str]:
    """Raw query strings a signer may have sent for these parameters, each covering EVERY pair.

    API Gateway's REST proxy event carries the query only as parsed (decoded)
    parameters, so the raw string is rebuilt: in the key orders above, with each
    common encoder's safe set, `+` or `%20` for a space, upper- or lowercase hex.
    """
    pairs = query_pairs(params)
    if not pairs:
        return [""]
    out: dict[str, None] = {}
    for order in _orders(pairs):
        for safe, plus, lower in itertools.product(_SAFE_SETS, (False, True), (False, True)):
            out["&".join(f"{_encode(k, safe, plus, lower)}={_encode(v, safe, plus, lower)}" for k, v in order)] = None
    return list(out)


def verify_get(
    headers: Mapping[str, str], path: str, params: QueryParams, secret: str, now: int, window: int = 300
) -> None:
    ts, sig = _check_timestamp(headers, now, window)
    pairs = query_pairs(params)
    if len(pairs) > MAX_QUERY_PAIRS:
        raise AuthError(400, f"more than {MAX_QUERY_PAIRS} query parameters")
    try:
        candidates = candidate_queries(pairs)
    except UnicodeEncodeError:
        raise AuthError(400, "query parameters are not valid UTF-8") from None
    ok = False
    for query in candidates:
        # No early exit: every candidate costs the same, so timing says nothing.
        ok |= hmac.compare_digest(sign(secret, ts, get_message(path, query)).encode(), sig)
    if not ok:
        raise AuthError(401, "bad signature")
