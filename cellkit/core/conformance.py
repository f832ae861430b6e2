"""The cell protocol's rules (docs/protocol.md), as checks a fake edge applies to what a forwarder sends.

Pure: headers, bodies and times in, violations out. `Observer` keeps what it needs across requests
(each sandbox's last tick end, the ids seen, the answer it gave last) and scripts its answers so the
forwarder's handling of each can be watched: 202, then 503, 413, 401 and 400, then 202 for good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_BODY_BYTES = 1_048_576
MAX_BATCH_ENVELOPES = 1000
MAX_INTERVAL_S = Decimal(3600)
SKEW_SECONDS = 300
MIN_BACKOFF_SECONDS = 0.1
ENVELOPE_KEYS = ("id", "type", "sandbox_id", "org_id", "plan", "worker_id", "cell_id", "payload", "timestamp")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
SCRIPT = (202, 503, 413, 401, 400)  # then 202 for good
MICROS = 10**6


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str

    def line(self) -> str:
        return f"{self.rule}: {self.detail}"


def check_signature(headers: Mapping[str, str], message: bytes, secret: str, now: int) -> list[Violation]:
    """CONTRACT 1: X-Timestamp digits within 300 s, X-Signature = hex HMAC-SHA256 of "{ts}." + message."""
    ts, sig = headers.get("x-timestamp", ""), headers.get("x-signature", "")
    if not ts or not sig:
        return [Violation("signature", "X-Timestamp or X-Signature missing")]
    if not ts.isdigit() or len(ts) > 12:
        return [Violation("signature", f"X-Timestamp {ts[:40]!r} is not unix seconds")]
    expected = hmac.new(secret.encode(), ts.encode() + b"." + message, hashlib.sha256).hexdigest()
    out = []
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        out.append(Violation("signature", "X-Signature is not the lowercase hex HMAC-SHA256 of \"{X-Timestamp}.\" + "
                                          "the exact bytes sent"))
    if abs(now - int(ts)) > SKEW_SECONDS:
        out.append(Violation("clock", f"X-Timestamp {ts} is {now - int(ts)} s from the edge's clock (> 300 s)"))
    return out


def good_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable()


def interval_of(payload: Mapping[str, Any]) -> Decimal | None:
    raw = payload.get("interval_s")
    if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 and value == value.quantize(Decimal("0.000001")) else None


def check_envelope(env: Any, cell_id: str) -> list[Violation]:
    """CONTRACT 3: one usage_tick envelope's shape."""
    if not isinstance(env, dict):
        return [Violation("envelope", "an envelope is not a JSON object")]
    name = str(env.get("id"))[:80]
    missing = [k for k in ENVELOPE_KEYS if k not in env]
    if missing:
        return [Violation("envelope", f"{name}: missing {', '.join(missing)}")]
    out: list[Violation] = []
    if not all(good_id(env[k]) for k in ("id", "sandbox_id", "org_id", "worker_id", "cell_id")):
        out.append(Violation("id", f"{name}: ids must be 1-200 printable characters"))
    if env["type"] != "usage_tick" or env["plan"] not in ("pro", "free"):
        out.append(Violation("envelope", f"{name}: type must be usage_tick and plan pro or free"))
    if env["cell_id"] != cell_id:
        out.append(Violation("envelope", f"{name}: cell_id {str(env['cell_id'])[:40]!r} is not X-Cell-Id {cell_id!r}"))
    payload = env["payload"] if isinstance(env["payload"], dict) else {}
    memory = payload.get("memory_mb")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        out.append(Violation("envelope", f"{name}: payload.memory_mb must be a positive integer"))
    interval = interval_of(payload)
    if interval is None:
        out.append(Violation("interval", f"{name}: payload.interval_s must be a positive number of seconds with at "
                                         "most six decimals (integer microseconds)"))
    elif interval > MAX_INTERVAL_S:
        out.append(Violation("interval", f"{name}: interval_s {interval} exceeds 3600 (catch-up is capped)"))
    if not isinstance(env["timestamp"], str) or not RFC3339.fullmatch(env["timestamp"]):
        out.append(Violation("envelope", f"{name}: timestamp must be RFC 3339 (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)"))
    return out


def end_us(env: Mapping[str, Any]) -> int:
    when = datetime.fromisoformat(str(env["timestamp"]).replace("Z", "+00:00"))
    return int(when.timestamp()) * MICROS + when.microsecond


@dataclass
class Tiling:
    """Per sandbox, each tick must start where the previous one ended (a capped catch-up excepted)."""

    ends: dict[str, int] = field(default_factory=dict)

    def add(self, env: Mapping[str, Any], interval: Decimal) -> list[Violation]:
        end = end_us(env)
        start = end - int(interval * MICROS)
        previous = self.ends.get(env["sandbox_id"])
        self.ends[env["sandbox_id"]] = max(end, previous or end)
        if previous is None or start == previous or (start > previous and interval == MAX_INTERVAL_S):
            return []
        kind = "overlaps the previous tick by" if start < previous else "leaves a gap of"
        return [Violation("tiling", f"{str(env['id'])[:80]}: sandbox {str(env['sandbox_id'])[:40]} {kind} "
                                    f"{abs(previous - start) / MICROS} s (ticks must tile its running time)")]


def digest(env: Any) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True, default=str).encode()).hexdigest()
