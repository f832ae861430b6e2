"""`make test`'s coverage table and floor (tests/coverage_report.py) from a SlipCover report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.coverage_report import main


def summary(lines: int, missed: int, branches: int = 0, missed_branches: int = 0) -> dict[str, object]:
    return {"summary": {"covered_lines": lines - missed, "missing_lines": missed,
                        "covered_branches": branches - missed_branches, "missing_branches": missed_branches}}


def write(tmp_path: Path, files: dict[str, object]) -> Path:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps({"meta": {}, "files": files, "summary": {}}))
    return path


def test_the_floor_counts_lines_and_branches_of_the_core_and_services_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write(tmp_path, {
        "chalicelib/core/a.py": summary(80, 4, 20, 6),  # 90 of 100
        "cellkit/services/b.py": summary(10, 0),
        "chalicelib/adapters/c.py": summary(10, 10),  # printed, not floored
        "chalicelib/core/full.py": summary(5, 0),
    })
    assert main([str(report), "--floor", "90"]) == 0
    out = capsys.readouterr().out
    assert "chalicelib/adapters/c.py" in out and "0.0%" in out and "full.py" not in out
    assert "2 files skipped due to complete coverage." in out
    assert "cellkit/services: 91.3% (floor 90%)" in out  # (90 + 10 + 5) of 115: not the adapter
    assert main([str(report), "--floor", "92"]) == 1


def test_no_floored_code_measured_fails(tmp_path: Path) -> None:
    assert main([str(write(tmp_path, {"chalicelib/adapters/c.py": summary(10, 0)}))]) == 1
