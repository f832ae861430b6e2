"""Exact time: integer microseconds since the epoch everywhere inside the kit.

Floats never hold a moment or a sum: a float second cannot represent most
microsecond values, and adding thousands of them drifts (the seed's 2.5 %
ticker loss was the same family of bug, with whole seconds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MICROS = 1_000_000
HOUR_US = 3600 * MICROS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seconds_float(us: int) -> float:
    """The wire form of an interval: a JSON number whose shortest repr is exactly the 6-place decimal.

    IEEE division is correctly rounded, so the float is the nearest double to
    us / 10^6 and its repr (shortest round-trip) reads back as that decimal;
    tests/cellkit/core/test_ticker.py checks it over jittered intervals.
    """
    return us / MICROS


def rfc3339(us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
