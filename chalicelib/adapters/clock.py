"""Time as an injected dependency, so tests and the fleet simulation can move it."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class FixedClock:
    """A clock tests set and advance by hand."""

    def __init__(self, now: int) -> None:
        self._now = now

    def now(self) -> int:
        return self._now

    def set(self, now: int) -> None:
        self._now = now

    def advance(self, seconds: int) -> None:
        self._now += seconds
