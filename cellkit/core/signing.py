"""CONTRACT section 1: the cell <-> edge HMAC headers, for bodies and for GETs."""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: int, message: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + message, hashlib.sha256).hexdigest()


def body_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"X-Timestamp": str(timestamp), "X-Signature": signature(secret, timestamp, body)}


def get_headers(secret: str, timestamp: int, path: str, raw_query: str) -> dict[str, str]:
    """``path`` is the route path (no stage prefix); ``raw_query`` exactly as sent on the wire."""
    message = (path + ("?" + raw_query if raw_query else "")).encode()
    return {"X-Timestamp": str(timestamp), "X-Signature": signature(secret, timestamp, message)}
