"""Capped exponential backoff with jitter, as a pure function of the attempt and a uniform draw."""

from __future__ import annotations


def delay(attempt: int, draw: float, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based); ``draw`` in [0, 1).

    "Equal jitter": half the exponential step is fixed, half random, so a fleet
    of cells restarted together spreads out yet never hammers at zero delay.
    """
    step = min(cap, base * (2 ** min(attempt, 32)))
    return step / 2 + step / 2 * draw
