"""Clocks: the system one, and one tests move by hand."""

from __future__ import annotations

import time


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class ManualClock:
    def __init__(self, now_us: int) -> None:
        self._now = now_us

    def now_us(self) -> int:
        return self._now

    def set(self, now_us: int) -> None:
        self._now = now_us

    def advance_us(self, us: int) -> None:
        self._now += us
