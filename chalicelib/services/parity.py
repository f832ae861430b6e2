"""The edge half of the parity check: GB-seconds of pro samples per org in [from, to), from aggregates only.

Every stored pro sample counts, on time or late, swept or not: a window is whole buckets, answered from
each bucket's settled aggregates plus the stragglers not added into them yet (the late index of the late
slots not swept, read by bucket range; with no such slot, nothing more is read). No raw sample of a bucket is
ever read here, so the answer costs the same for a bucket of ten samples or of a hundred million. A
bucket not settled yet is answered 503 with Retry-After (CONTRACT section 2), and a closed one is
handed to the pipeline at once (`request_settle`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.core.money import exact
from chalicelib.core.pricing import gb_seconds
from chalicelib.ports import LateStore, RunControl, TaskQueue
from chalicelib.services.late_fanout import CURSOR as LATE_CURSOR
from chalicelib.services.rollup_fanout import ShardedStore
from chalicelib.services.settlement import request_settle, settled
from chalicelib.settings import Settings

MAX_WINDOW_SECONDS = 7 * 86400


class ParityStore(ShardedStore, LateStore, RunControl, Protocol):
    """The billing store's roles parity reads: settled aggregates, the stragglers not swept into them and
    the late cursor."""


class WindowError(ValueError):
    """The requested window is malformed (answered 400)."""


class NotSettled(Exception):
    """A bucket of the window is not settled yet (answered 503 with Retry-After: not an error, a wait)."""

    def __init__(self, buckets: list[int], retry_after: int) -> None:
        super().__init__(f"buckets {buckets} are not settled yet: ask again in {retry_after}s")
        self.buckets, self.retry_after = buckets, retry_after


def retry_after(buckets: list[int], settings: Settings, now: int) -> int:
    """Seconds until every bucket can be settled: an open one first closes (end + grace)."""
    closes = max(b + settings.BUCKET_SECONDS + settings.GRACE_SECONDS for b in buckets)
    return max(closes - now, 0) + settings.PARITY_RETRY_SECONDS


@dataclass(frozen=True)
class Window:
    start: int
    end: int


def parse_window(params: dict[str, str] | None) -> Window:
    params = params or {}
    raw_from, raw_to = params.get("from"), params.get("to")
    if raw_from is None or raw_to is None:
        raise WindowError("query parameters 'from' and 'to' (unix seconds) are required")
    try:
        start, end = int(raw_from), int(raw_to)
    except ValueError:
        raise WindowError(f"'from'={raw_from!r} and 'to'={raw_to!r} must be integers (unix seconds)") from None
    if start < 0 or end <= start:
        raise WindowError(f"window [{start}, {end}) is empty or negative: 'to' must be greater than 'from'")
    if end - start > MAX_WINDOW_SECONDS:
        raise WindowError(f"window of {end - start}s exceeds the {MAX_WINDOW_SECONDS}s maximum")
    return Window(start, end)


@dataclass
class OrgUsage:
    gb_seconds: Decimal = Decimal(0)
    samples: int = 0


def aligned(window: Window, width: int) -> Window:
    if window.start % width or window.end % width:
        raise WindowError(
            f"window [{window.start}, {window.end}) must start and end on bucket boundaries "
            f"(multiples of BUCKET_SECONDS={width}): the edge answers whole buckets from their aggregates"
        )
    return window


def usage_parity(store: ParityStore, settings: Settings, window: Window, now: int,
                 queue: TaskQueue | None = None) -> dict[str, Any]:
    width = settings.BUCKET_SECONDS
    buckets = list(range(aligned(window, width).start, window.end, width))
    waiting = [b for b in buckets if store.bucket_state(b) is None]
    if waiting:
        for b in waiting:
            request_settle(store, settings, queue, b, now)
        raise NotSettled(waiting, retry_after(waiting, settings, now))
    usage: dict[str, OrgUsage] = defaultdict(OrgUsage)
    applied: dict[tuple[int, str], frozenset[int]] = {}
    for b in buckets:
        for agg in settled(store, b) or []:
            usage[agg.org_id].gb_seconds += agg.gb_seconds
            usage[agg.org_id].samples += agg.samples
            applied[(b, agg.org_id)] = agg.late_slots
    # Aggregates leave out a late slot's stragglers until its sweep adds them (once, naming the slot): the
    # slots not swept yet are read by bucket range; with none since the late cursor, one read.
    for slot, s in store.unswept_late(buckets[0], buckets[-1], store.cursor(LATE_CURSOR) or 0):
        if slot not in applied.get((s.bucket_start, s.org_id), frozenset()):
            usage[s.org_id].gb_seconds += gb_seconds(s.memory_mb, s.seconds)
            usage[s.org_id].samples += 1
    return {
        "window": {"from": window.start, "to": window.end},
        "orgs": [
            {"org_id": org, "gb_seconds": float(exact(u.gb_seconds)), "samples": u.samples}
            for org, u in sorted(usage.items())
        ],
        "as_of": now,
    }
