"""`cutover arm` / `rollback` rewrite `.chalice/config.json` while the local stack's pollers re-read it every loop:
a reader must see the old text or the new one, never an empty or half-written file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chalicelib.entrypoints import cli_cutover
from chalicelib.entrypoints.cli_cutover import replace_file

OLD, NEW = '{"stages": {"a": 1}}\n', '{"stages": {"a": 2, "b": 3}}\n'


def test_a_reader_during_the_write_sees_the_old_text_and_after_it_the_new(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(OLD)
    path.chmod(0o640)
    seen: list[str] = []
    real_replace = os.replace

    def observed(src: str, dst: str) -> None:
        seen.append(path.read_text())  # the moment before the rename: a poller reading now
        real_replace(src, dst)

    monkeypatch.setattr(cli_cutover.os, "replace", observed)
    replace_file(path, NEW)
    assert seen == [OLD]
    assert path.read_text() == NEW
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(OLD)

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_cutover.os, "replace", full)
    with pytest.raises(OSError):
        replace_file(path, NEW)
    assert path.read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
