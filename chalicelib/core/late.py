"""Stragglers: samples written after their bucket could be read, billed later as deltas.

The late signal tells the rollup whether the late index can hold anything new,
so a quiet run costs one read instead of a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chalicelib.core.outbox import OutboxRow


@dataclass(frozen=True)
class LateChunk:
    """Late samples of one (org, bucket), billed together: delta rows, aggregate update and
    flag removal commit atomically, so a crash or a racing run can never bill them twice."""

    org_id: str
    bucket_start: int
    rows: list[OutboxRow]
    seconds_by_memory: dict[int, Decimal]
    event_ids: list[str]


@dataclass(frozen=True)
class LateSignal:
    """Whether the late index can hold anything new since the rollup last swept it.

    `version` is bumped before every write that may add a late sample; the rest
    is the rollup's own record of what it observed and when.
    """

    version: int = 0
    seen_version: int | None = None
    seen_at: int = 0
    swept_version: int | None = None
    swept_at: int = 0


# Allowance for the late index to show a write: a GSI is eventually consistent (in practice
# it lags well under a second).
GSI_LAG_SECONDS = 60


def late_sweep_due(signal: LateSignal, now: int, interval: int) -> bool:
    """Sweep unless the current version was already swept completely, and not too long ago.

    The periodic sweep is a backstop only: every late write bumps the version first.
    """
    return signal.swept_version != signal.version or now - signal.swept_at >= interval


def after_sweep(signal: LateSignal, now: int, settle: int) -> LateSignal:
    """The signal after a complete sweep at `now` (nothing waiting, nothing left over).

    A version counts as swept only by a sweep starting `settle` seconds after the
    rollup first saw it: by then every write that bumped it has finished (a write
    outlives no API Lambda timeout) and its index entries are visible.
    """
    seen_at = signal.seen_at if signal.seen_version == signal.version else now
    if now - seen_at >= settle:
        return LateSignal(signal.version, signal.version, seen_at, signal.version, now)
    return LateSignal(signal.version, signal.version, seen_at, signal.swept_version, signal.swept_at)
