"""The cells' ingest envelopes (CONTRACT section 3), validated one by one.

A batch is parsed as JSON once; each element is then validated on its own so
one poison envelope is quarantined with its reason while the rest are stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.money import exact

USAGE_TICK = "usage_tick"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BatchError(ValueError):
    """The body as a whole is unusable (not JSON, not an array)."""


def parse_batch(body: bytes) -> list[Any]:
    """Decode the body; floats stay exact Decimals, NaN/Infinity survive to be rejected per envelope."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise BatchError("body must be a JSON array of envelopes")
    return data


def epoch_seconds(value: datetime) -> Decimal:
    """Exact epoch seconds with 6 places (integer microseconds scaled: no division, no rounding)."""
    delta = value - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros).scaleb(-6)


def _finite_number(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{name} must be a number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{name} must be finite")
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    sandbox_id: str = Field(min_length=1, max_length=200)
    org_id: str | None = Field(default=None, max_length=200)
    plan: str | None = None
    worker_id: str = Field(max_length=200)
    cell_id: str = Field(max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("timestamp must be an RFC 3339 string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no UTC offset")
        return parsed

    @property
    def ts(self) -> Decimal:
        return epoch_seconds(self.timestamp)


class UsageTick(BaseModel):
    """A usage_tick payload; older workers omit memory_mb/cpu_count (stored as 0)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    memory_mb: int = Field(default=0, ge=0, le=4_194_304, strict=True)
    cpu_count: int = Field(default=0, ge=0, le=4096, strict=True)
    interval_s: Decimal
    cost_cents: Decimal | None = None

    @field_validator("interval_s", "cost_cents", mode="before")
    @classmethod
    def _number(cls, value: object, info: Any) -> Decimal | None:
        if value is None and info.field_name == "cost_cents":
            return None
        return _finite_number(value, info.field_name)


class TickEnvelope(Envelope):
    """A usage_tick envelope: payload validated in the same call (one validator run per tick)."""

    payload: UsageTick  # type: ignore[assignment]


@dataclass(frozen=True)
class Rejected:
    """An envelope kept in quarantine instead of stored, with why."""

    index: int
    quarantine_id: str
    reason: str
    raw: Any


@dataclass(frozen=True)
class Tick:
    envelope: Envelope
    usage: UsageTick
    end: Decimal

    @property
    def start(self) -> Decimal:
        return exact(self.end - self.usage.interval_s)


@dataclass(frozen=True)
class Validated:
    ticks: list[tuple[int, Tick]]
    others: list[tuple[int, Envelope]]
    rejected: list[Rejected]


def quarantine_id(raw: Any) -> str:
    """The envelope's own id when it has a usable one, else a digest of its content."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and 0 < len(raw["id"]) <= 200:
        return raw["id"]
    canon = json.dumps(raw, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canon).hexdigest()


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_one(raw: Any, max_interval: int, now: int, max_age: int) -> Tick | Envelope | str:
    """A Tick, another Envelope, or the reason it is rejected."""
    if not isinstance(raw, dict):
        return "envelope must be a JSON object"
    is_tick = raw.get("type") == USAGE_TICK
    try:
        env = (TickEnvelope if is_tick else Envelope).model_validate(raw)
    except (ValidationError, InvalidOperation) as exc:
        return _reason(exc) if isinstance(exc, ValidationError) else str(exc)
    if not isinstance(env, TickEnvelope):
        return env
    usage = env.payload
    if usage.interval_s > max_interval:
        return f"payload.interval_s: {usage.interval_s} exceeds the {max_interval}s bound"
    end = env.ts
    if end > now + 300:
        return f"timestamp {env.timestamp.isoformat()} is more than 300s in the future"
    if end < now - max_age:
        return f"timestamp {env.timestamp.isoformat()} is older than the {max_age}s retention"
    return Tick(envelope=env, usage=usage, end=end)


def validate_batch(items: list[Any], max_interval: int, now: int, max_age: int) -> Validated:
    ticks: list[tuple[int, Tick]] = []
    others: list[tuple[int, Envelope]] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(items):
        result = validate_one(raw, max_interval, now, max_age)
        if isinstance(result, Tick):
            ticks.append((index, result))
        elif isinstance(result, Envelope):
            others.append((index, result))
        else:
            rejected.append(Rejected(index=index, quarantine_id=quarantine_id(raw), reason=result, raw=raw))
    return Validated(ticks=ticks, others=others, rejected=rejected)
