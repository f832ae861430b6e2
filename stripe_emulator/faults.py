"""What the emulator is told to do wrong (a status, a dropped connection, a delay, for a path and method), and
what it remembers of an idempotency key (Stripe replays the first answer to the same key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    path: str
    method: str
    kind: str
    count: int | None = 1
    status: int = 500
    retry_after: int = 1
    delay_ms: int = 0


@dataclass
class Remembered:
    fingerprint: str
    status: int = 0
    body: dict[str, Any] | None = None
    done: bool = False
    at: int = 0
