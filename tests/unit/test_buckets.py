from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.buckets import bucket_of, buckets_between, is_closed, overlap, split
from chalicelib.core.money import exact

widths = st.sampled_from([60, 900, 3600, 86400])
instants = st.decimals(min_value=0, max_value=4_000_000_000, places=6, allow_nan=False, allow_infinity=False)
lengths = st.decimals(min_value=0, max_value=200_000, places=6, allow_nan=False, allow_infinity=False)


@given(instants, lengths, widths)
def test_split_keeps_every_second_and_respects_boundaries(start: Decimal, length: Decimal, width: int) -> None:
    end = start + length
    pieces = split(start, end, width)
    assert sum((p.seconds for p in pieces), Decimal(0)) == exact(length)
    for p in pieces:
        assert p.bucket_start <= p.start < p.end <= p.bucket_start + width
        assert p.bucket_start % width == 0
    for a, b in pairwise(pieces):
        assert a.end == b.start and b.bucket_start == a.bucket_start + width


def test_split_example_across_an_hour() -> None:
    [a, b] = split(Decimal("3590"), Decimal("3610"), 3600)
    assert (a.bucket_start, a.seconds, b.bucket_start, b.seconds) == (0, Decimal(10), 3600, Decimal(10))


def test_empty_interval_has_no_slices() -> None:
    assert split(Decimal(5), Decimal(5), 60) == []


@given(instants, lengths, st.integers(0, 4_000_000_000), st.integers(1, 100_000))
def test_overlap_is_bounded(start: Decimal, length: Decimal, wfrom: int, wlen: int) -> None:
    o = overlap(start, start + length, wfrom, wfrom + wlen)
    assert Decimal(0) <= o <= min(exact(length), Decimal(wlen))


def test_closed_only_after_grace() -> None:
    assert not is_closed(0, 3600, 600, 4199)
    assert is_closed(0, 3600, 600, 4200)


def test_bucket_of_and_range() -> None:
    assert bucket_of(Decimal("7199.999"), 3600) == 3600
    assert list(buckets_between(100, 7300, 3600)) == [0, 3600, 7200]
