from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chalicelib.core.envelopes import BatchError, Tick, parse_batch, quarantine_id, validate_one
from tests.conftest import T0, iso, tick

NOW = T0 + 3600
AGE = 45 * 86400


def one(raw: object) -> object:
    return validate_one(raw, 3600, NOW, AGE)


def test_floats_parse_exactly() -> None:
    [raw] = parse_batch(json.dumps([tick("e", "o", iso(T0), interval_s=20.1)]).encode())
    t = one(raw)
    assert isinstance(t, Tick) and t.usage.interval_s == Decimal("20.1")


def test_fractional_timestamp_is_kept() -> None:
    t = one(tick("e", "o", "2026-11-25T00:00:01.250+00:00"))
    assert isinstance(t, Tick) and t.end == Decimal(T0) + Decimal("1.25") and t.start == t.end - 20


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"timestamp": "2026-11-25T00:00:00"}, "UTC offset"),
        ({"timestamp": 1795564800}, "RFC 3339"),
        ({"id": ""}, "id"),
        ({"payload": {"interval_s": "20"}}, "number"),
        ({"payload": {"interval_s": True}}, "number"),
        ({"payload": {"interval_s": 20, "memory_mb": 1.5}}, "memory_mb"),
        ({"payload": {"interval_s": 20, "cpu_count": -1}}, "cpu_count"),
        ({"payload": {}}, "interval_s"),
        ({"timestamp": iso(NOW + 301)}, "future"),
        ({"timestamp": iso(NOW - AGE - 1)}, "older"),
    ],
)
def test_rejections_name_the_problem(change: dict[str, object], fragment: str) -> None:
    result = one(tick("e", "o", iso(T0)) | change)
    assert isinstance(result, str) and fragment in result


def test_non_object_and_non_array() -> None:
    assert one("x") == "envelope must be a JSON object"
    with pytest.raises(BatchError):
        parse_batch(b'{"a": 1}')


def test_quarantine_id_is_deterministic() -> None:
    assert quarantine_id({"id": "abc"}) == "abc"
    assert quarantine_id([1, 2]) == quarantine_id([1, 2]) != quarantine_id([2, 1])
