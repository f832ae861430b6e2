"""One suite, two Archives: MemoryArchive must answer as S3Archive (moto) does."""

from __future__ import annotations

import pytest

from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.ports import Archive
from tests.conftest import ARCHIVE, T0

DAY = "2026-11-25"  # T0's day


@pytest.fixture(params=["memory", "s3"])
def archive(request: pytest.FixtureRequest) -> Archive:
    if request.param == "memory":
        return MemoryArchive()
    return S3Archive(request.getfixturevalue("s3"), ARCHIVE)


def test_batches_are_keyed_by_cell_day_and_content_and_read_back_per_day(archive: Archive) -> None:
    a = archive.put_batch("cell-a", T0 + 5, b'[{"id": 1}]')
    again = archive.put_batch("cell-a", T0 + 5, b'[{"id": 1}]')
    b = archive.put_batch("cell-b", T0 + 7, b"[]")
    archive.put_batch("cell-a", T0 + 86400, b"[2]")
    assert a == again and a is not None and a.startswith(f"raw/cell-a/{DAY}/{T0 + 5}-")
    assert list(archive.batches("cell-a", DAY)) == [(a, b'[{"id": 1}]')]
    assert list(archive.batches(None, DAY)) == [(a, b'[{"id": 1}]'), (b, b"[]")]
    assert list(archive.batches("cell-c", DAY)) == []
