from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.limits import JsonBodyError, deeper_than, is_printable_id, load_json, printable


@pytest.mark.parametrize("depth, deeper", [(32, False), (33, True)])
def test_nesting_limit_is_exact(depth: int, deeper: bool) -> None:
    body = b"[" * depth + b"]" * depth
    if deeper:
        with pytest.raises(JsonBodyError, match="deeper than 32"):
            load_json(body)
    else:
        assert deeper_than(load_json(body), 32) is False


def test_nesting_beyond_pythons_recursion_limit_is_a_json_error() -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        with pytest.raises(JsonBodyError, match="deeper than"):
            load_json(body)


def test_big_integers_become_decimals_only_when_asked() -> None:
    assert load_json(b"[" + b"9" * 5000 + b"]", big_ints=True) == [Decimal("9" * 5000)]
    assert load_json(b"[12]", big_ints=True) == [12]
    with pytest.raises(JsonBodyError):
        load_json(b"[" + b"9" * 5000 + b"]")


@pytest.mark.parametrize("bad", ["", "a\x00", "\ud800", "a\u2028b", "x" * 201, "\x1b[0m", "tab\t"])
def test_printable_refuses(bad: str) -> None:
    assert not is_printable_id(bad)
    with pytest.raises(ValueError):
        printable(bad, "id")


def test_printable_ascii() -> None:
    assert is_printable_id("orgé") and not is_printable_id("orgé", ascii_only=True)
    assert is_printable_id("org a:b/c", ascii_only=True)


@given(st.recursive(st.integers() | st.text(), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c,
       max_size=3), max_leaves=20))
def test_deeper_than_matches_a_recursive_count(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        return 0

    d = depth(value)
    assert deeper_than(value, d) is False and deeper_than(value, d - 1) is (d > 0)
