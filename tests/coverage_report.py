"""`make test`'s coverage table and floor, read from SlipCover's JSON (out/coverage.json).

Why SlipCover and not coverage.py: Python 3.11 has no sys.monitoring, so coverage.py's tracer is called for
every line and call of every module, moto's and botocore's included: it made the suite cost ~80 % more CPU
(measured on tests/integration/routes, contract, services and unit, one process: 21.7 CPU-s untraced, 38.5
traced by coverage.py, 25.7 by SlipCover). SlipCover instruments only the measured packages' bytecode and
removes each probe once it has fired, so every test runs measured, fuzz and simulations included.

Why this file: SlipCover prints one format a run; this prints the table (files not fully covered) and the
floor from the one JSON it wrote, and fails the run below the floor.

    python -m tests.coverage_report out/coverage.json [--floor 90]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The floor applies to the decisions: the pure core and the services of the edge and of the cell kit.
FLOORED = ("chalicelib/core/", "chalicelib/services/", "cellkit/core/", "cellkit/services/")


@dataclass(frozen=True)
class Tally:
    lines: int = 0
    missed_lines: int = 0
    branches: int = 0
    missed_branches: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.lines + other.lines, self.missed_lines + other.missed_lines,
                     self.branches + other.branches, self.missed_branches + other.missed_branches)

    @property
    def percent(self) -> float:
        """Lines and branches together, as coverage.py's branch figure counts them."""
        total = self.lines + self.branches
        return 100.0 if total == 0 else 100.0 * (total - self.missed_lines - self.missed_branches) / total


def tallies(report: dict[str, object]) -> dict[str, Tally]:
    files = report["files"]
    assert isinstance(files, dict)
    out: dict[str, Tally] = {}
    for name, data in files.items():
        s = data["summary"]
        out[name] = Tally(s["covered_lines"] + s["missing_lines"], s["missing_lines"],
                          s.get("covered_branches", 0) + s.get("missing_branches", 0), s.get("missing_branches", 0))
    return out


def total(parts: Iterable[Tally]) -> Tally:
    return sum(parts, Tally())


def render(by_file: dict[str, Tally], floor: float) -> tuple[list[str], bool]:
    """The table's lines and whether the floored packages meet the floor."""
    width = max((len(n) for n in by_file), default=4) + 2
    head = f"{'Name':<{width}}{'Lines':>7}{'Miss':>6}{'Branch':>8}{'BrMiss':>8}{'Cover':>8}"
    rows = [head, "-" * len(head)]
    partial = {n: t for n, t in sorted(by_file.items()) if t.missed_lines or t.missed_branches}
    for name, t in partial.items():
        rows.append(f"{name:<{width}}{t.lines:>7}{t.missed_lines:>6}{t.branches:>8}{t.missed_branches:>8}"
                    f"{t.percent:>7.1f}%")
    everything = total(by_file.values())
    rows += ["-" * len(head), f"{'TOTAL':<{width}}{everything.lines:>7}{everything.missed_lines:>6}"
             f"{everything.branches:>8}{everything.missed_branches:>8}{everything.percent:>7.1f}%",
             f"{len(by_file) - len(partial)} files skipped due to complete coverage."]
    floored = total(t for n, t in by_file.items() if n.startswith(FLOORED))
    ok = floored.lines > 0 and floored.percent >= floor
    rows.append(f"branch coverage of {', '.join(p.rstrip('/') for p in FLOORED)}: {floored.percent:.1f}% "
                f"(floor {floor:g}%)")
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--floor", type=float, default=90.0)
    args = parser.parse_args(argv)
    rows, ok = render(tallies(json.loads(args.report.read_text())), args.floor)
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
