"""The edge half of the parity check: GB-seconds of raw pro samples per org in [from, to).

Every stored pro sample counts, on time or late, swept or not. Whole closed
buckets are answered from their settled aggregates (one small Query, however
many cells ask about the same hour) only while the late signal says every
straggler has been folded into them; otherwise, and for partial or open
buckets, from the raw samples, clipped with the same attribution the rollup uses.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.core.buckets import buckets_between, overlap
from chalicelib.core.money import exact
from chalicelib.core.pricing import gb_seconds
from chalicelib.ports import BillingStore
from chalicelib.services.settlement import settle
from chalicelib.settings import Settings

MAX_WINDOW_SECONDS = 7 * 86400


class WindowError(ValueError):
    """The requested window is malformed (answered 400)."""


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


def usage_parity(store: BillingStore, settings: Settings, window: Window, now: int) -> dict[str, Any]:
    width = settings.BUCKET_SECONDS
    usage: dict[str, OrgUsage] = defaultdict(OrgUsage)
    # Aggregates leave out stragglers until a sweep folds them in; a swept signal means none is waiting.
    signal = store.late_signal()
    folded = signal.version == 0 or signal.swept_version == signal.version
    for b in buckets_between(window.start, window.end, width):
        whole = window.start <= b and b + width <= window.end
        settled = settle(store, settings, b, now) if whole and folded else None
        if settled is not None:
            for agg in settled:
                usage[agg.org_id].gb_seconds += agg.gb_seconds
                usage[agg.org_id].samples += agg.samples
            continue
        for s in store.bucket_samples(b):
            part = overlap(s.start, s.end, window.start, window.end)
            if part > 0:
                usage[s.org_id].gb_seconds += gb_seconds(s.memory_mb, part)
                usage[s.org_id].samples += 1
    return {
        "window": {"from": window.start, "to": window.end},
        "orgs": [
            {"org_id": org, "gb_seconds": float(exact(u.gb_seconds)), "samples": u.samples}
            for org, u in sorted(usage.items())
        ],
        "as_of": now,
    }
