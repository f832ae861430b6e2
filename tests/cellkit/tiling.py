"""The money check of the cell kit's race and outage tests: a sandbox's ticks tile its scale events exactly."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from cellkit.core.usage import ScaleEvent

US = 1_000_000


def assert_ticks_tile(envelopes: Mapping[str, Mapping[str, Any]], events: Iterable[ScaleEvent], case: str) -> None:
    """Per sandbox: no two ticks overlap, each lies inside one scale event at its size, and their sum equals the
    events' spans to the microsecond (so nothing is ticked twice or never). Every event must be closed."""
    ticks: dict[str, list[tuple[int, int, int]]] = {}
    for env_id, env in envelopes.items():
        end = int(env_id.rsplit(":", 1)[1])  # the kit's ids end with the tick's end in microseconds
        span = int(Decimal(str(env["payload"]["interval_s"])) * US)
        ticks.setdefault(env["sandbox_id"], []).append((end - span, end, env["payload"]["memory_mb"]))
    by_sandbox: dict[str, list[ScaleEvent]] = {}
    for ev in events:
        assert ev.ended_us is not None, f"{case}: {ev} still open"
        by_sandbox.setdefault(ev.sandbox_id, []).append(ev)
    assert set(ticks) == set(by_sandbox), case
    for sid, evs in by_sandbox.items():
        mine = sorted(ticks[sid])
        spans = sum((e.ended_us or 0) - e.started_us for e in evs)
        assert sum(hi - lo for lo, hi, _ in mine) == spans, f"{case}: {sid} ticks {mine} against events {evs}"
        for (_, prev_end, _), (lo, _, _) in itertools.pairwise(mine):
            assert lo >= prev_end, f"{case}: {sid} ticked twice around {lo}: {mine}"
        for lo, hi, mb in mine:
            assert any(e.started_us <= lo and hi <= (e.ended_us or 0) and e.memory_mb == mb for e in evs), \
                f"{case}: {sid} tick {(lo, hi, mb)} matches no scale event {evs}"
