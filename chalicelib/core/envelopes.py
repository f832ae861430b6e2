"""The cells' ingest envelopes (CONTRACT section 3), validated one by one.

A batch is parsed as JSON once; each element is then validated on its own so
one poison envelope is quarantined with its reason while the rest are stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.core.limits import MAX_ID_LENGTH, JsonBodyError, is_printable_id, load_json, printable
from chalicelib.core.money import exact

USAGE_TICK = "usage_tick"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BatchError(ValueError):
    """The body as a whole is unusable (not JSON, not an array)."""


# RFC 3339 exactly (section 5.6): ASCII digits, a "T" (either case) between date and time,
# seconds required, a "Z" or a +hh:mm offset; nothing after it. fromisoformat alone also
# takes "20261130T...", ISO week dates, a space separator and more.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Bounds what one rejected envelope adds to the answer and to its quarantine item.
MAX_REASON_LENGTH = 500
# $10M for one tick of one sandbox: far above any real price, far below Decimal's 28 digits in micro-cents.
MAX_TICK_COST_CENTS = 10**9


def parse_batch(body: bytes) -> list[Any]:
    """Decode the body; floats stay exact Decimals, NaN/Infinity survive to be rejected per envelope,
    and so do integers too long for int() (as Decimals): one poison envelope never fails the parse."""
    try:
        data = load_json(body, parse_float=Decimal, big_ints=True)
    except JsonBodyError as exc:
        raise BatchError(str(exc)) from None
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


def _id(value: str) -> str:
    return printable(value, "id")


def _label(value: str) -> str:
    return value and printable(value, "value")


# Ids are stored as DynamoDB keys and logged: printable, 1..200 characters (chalicelib.core.limits).
Id = Annotated[str, Field(max_length=MAX_ID_LENGTH), AfterValidator(_id)]
# Stored and logged but never a key: printable, or empty as older workers send them.
Label = Annotated[str, Field(max_length=MAX_ID_LENGTH), AfterValidator(_label)]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    type: Annotated[str, Field(max_length=100), AfterValidator(_id)]
    sandbox_id: Id
    org_id: Id | None = None
    plan: str | None = Field(default=None, max_length=32)
    worker_id: Label
    cell_id: Label
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("timestamp must be an RFC 3339 string")
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        if not _RFC3339.fullmatch(value):
            raise ValueError(
                f"timestamp {shown} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.frac] and a UTC offset, Z or +hh:mm)"
            )
        try:
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            raise ValueError(f"timestamp {shown} is not a valid date and time") from None
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
    # Bounded: a tick's cost becomes integer micro-cents in a 28-digit Decimal context (core/credits.py);
    # an absurd value is one envelope's quarantine, never a 500 that fails the cell's whole batch.
    cost_cents: Decimal | None = Field(default=None, ge=0, le=MAX_TICK_COST_CENTS)

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
    # Later copies of an envelope id already valid earlier in the same batch: stored once, counted once.
    duplicates: int = 0


def quarantine_id(raw: Any) -> str:
    """The envelope's own id when it is a usable one (printable, 1..200), else a digest of its content."""
    if isinstance(raw, dict) and is_printable_id(raw.get("id")):
        return str(raw["id"])
    # ensure_ascii (the default) escapes lone surrogates, so any parsed value has a digest.
    canon = json.dumps(raw, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canon).hexdigest()


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return bounded_reason("; ".join(parts))


def bounded_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_LENGTH else reason[: MAX_REASON_LENGTH - 3] + "..."


def validate_one(raw: Any, max_interval: int, now: int, max_age: int) -> Tick | Envelope | str:
    """A Tick, another Envelope, or the reason it is rejected."""
    if not isinstance(raw, dict):
        return "envelope must be a JSON object"
    is_tick = raw.get("type") == USAGE_TICK
    try:
        env = (TickEnvelope if is_tick else Envelope).model_validate(raw)
    except (ValidationError, InvalidOperation) as exc:
        return _reason(exc) if isinstance(exc, ValidationError) else bounded_reason(str(exc))
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
    seen: set[str] = set()
    for index, raw in enumerate(items):
        result = validate_one(raw, max_interval, now, max_age)
        if isinstance(result, str):
            rejected.append(Rejected(index=index, quarantine_id=quarantine_id(raw), reason=result, raw=raw))
            continue
        env = result.envelope if isinstance(result, Tick) else result
        if env.id in seen:
            continue  # an at-least-once forwarder re-sent it within the batch: it counts once
        seen.add(env.id)
        if isinstance(result, Tick):
            ticks.append((index, result))
        else:
            others.append((index, result))
    return Validated(ticks=ticks, others=others, rejected=rejected, duplicates=len(items) - len(seen) - len(rejected))
