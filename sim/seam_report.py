"""The cutover run's report: `out/cutover-report.json`, the chart beside it, and the summary table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sim.truth import OrgMeterLine


@dataclass
class BucketRow:
    bucket_start: int
    truth_gb_s: Decimal
    edge_gb_s: Decimal  # the edge's usage-parity route at the end of the run
    cell_gb_s: Decimal  # what the cells reported for the window (first report of each cell)
    billed_by: list[str]


@dataclass
class DriftRow:
    cell_id: str
    window_from: int
    org_id: str
    cell_gb_s: Decimal
    edge_gb_s: Decimal
    drift: Decimal
    rechecked: bool  # a re-check after a late backlog (it replaced the first report)


@dataclass
class RunReport:
    t: int
    bucket_seconds: int
    lines: list[OrgMeterLine]
    buckets: list[BucketRow]
    drift: list[DriftRow]
    cli: list[dict[str, Any]]
    costs: dict[str, Any]
    events: dict[str, Any] = field(default_factory=dict)

    @property
    def wrong(self) -> list[OrgMeterLine]:
        return [line for line in self.lines if line.difference != 0 or line.wrong_side != 0]

    def body(self) -> dict[str, Any]:
        return {"T": self.t, "bucket_seconds": self.bucket_seconds, "ok": not self.wrong,
                "per_org_meter": [asdict(line) for line in self.lines],
                "per_bucket": [asdict(b) for b in self.buckets],
                "parity_drift": [asdict(d) for d in self.drift],
                "cutover_cli": self.cli, "costs": self.costs, "events": self.events}


def write_json(report: RunReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.body(), indent=2, default=str) + "\n")


def summary(console: Console, report: RunReport) -> None:
    table = Table(title=f"per org and meter (T = {report.t})")
    for column in ("org", "meter", "ground truth", "cells < T", "edge >= T", "Stripe", "difference"):
        table.add_column(column, justify="left" if column in ("org", "meter") else "right")
    for line in report.lines:
        ok = line.difference == 0 and line.wrong_side == 0
        mark = f"[green]{line.difference}[/green]" if ok else f"[red]{line.difference}[/red]"
        table.add_row(line.org_id, line.meter.removeprefix("sandbox_compute_sandbox_"), str(line.truth),
                      str(line.cells_before_t), str(line.edge_from_t), str(line.stripe), mark)
    console.print(table)


SIDE_COLOURS = {"cell": "#4c72b0", "edge": "#dd8452", "both": "#c44e52", "none": "#dddddd"}


def side_of(billed_by: Sequence[str]) -> str:
    cells = any(s.startswith("cell:") for s in billed_by)
    edge = "edge" in billed_by
    return "both" if cells and edge else "cell" if cells else "edge" if edge else "none"


def chart(report: RunReport, path: Path) -> None:
    """Per bucket: truth, edge and cell GB-seconds, T marked, who billed each bucket; drift per org-window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), height_ratios=[3, 1.4], sharex=True)
    xs = [b.bucket_start - report.t for b in report.buckets]
    width = report.bucket_seconds
    for x, b in zip(xs, report.buckets, strict=True):
        top.axvspan(x, x + width, color=SIDE_COLOURS[side_of(b.billed_by)], alpha=0.18, lw=0)
    # Plotting only: the exact figures are in the JSON; floats never enter a sum.
    top.step(xs, [float(b.truth_gb_s) for b in report.buckets], where="post", color="black", lw=2.5,
             label="ground truth (sandboxes' running time)")
    top.step(xs, [float(b.cell_gb_s) for b in report.buckets], where="post", color=SIDE_COLOURS["cell"],
             lw=1.5, ls="--", label="cells' GB-s (their parity reports)")
    top.step(xs, [float(b.edge_gb_s) for b in report.buckets], where="post", color=SIDE_COLOURS["edge"],
             lw=1.5, ls=":", label="edge's GB-s (usage-parity, after the late backlog)")
    top.axvline(0, color="red", lw=2)
    top.text(0, top.get_ylim()[1] * 0.95, "  T: edge live", color="red", va="top")
    for side in ("cell", "edge", "both", "none"):
        top.bar(0, 0, color=SIDE_COLOURS[side], alpha=0.4, label=f"bucket billed by: {side}")
    top.set_ylabel("pro GB-seconds per bucket")
    top.legend(loc="upper left", fontsize=8, ncol=2)
    ok = "every difference zero" if not report.wrong else f"{len(report.wrong)} DIFFERENCE(S)"
    top.set_title(f"make run: shadow soak, cutover at T, edge live ({width} s buckets) - {ok}")
    for org in sorted({d.org_id for d in report.drift}):
        rows = [d for d in report.drift if d.org_id == org and not d.rechecked]
        bottom.scatter([d.window_from - report.t + width / 2 for d in rows],
                       [float(d.drift) * 100 for d in rows], s=14, label=org)
    rechecked = [d for d in report.drift if d.rechecked]
    if rechecked:
        bottom.scatter([d.window_from - report.t + width / 2 for d in rechecked],
                       [float(d.drift) * 100 for d in rechecked], marker="x", color="black", s=30,
                       label="re-checked after backlog")
    bottom.axvline(0, color="red", lw=2)
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_ylabel("parity drift %\nper org-bucket")
    bottom.set_xlabel("seconds from T")
    bottom.legend(loc="lower left", fontsize=7, ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def drift_rows(reports: Mapping[str, Sequence[Any]]) -> list[DriftRow]:
    """Every org row of every posted report; a later report of the same window is a re-check."""
    out: list[DriftRow] = []
    for cell_id, posted in reports.items():
        seen: set[int] = set()
        for r in posted:
            again = r.window_from in seen
            seen.add(r.window_from)
            out += [DriftRow(cell_id, r.window_from, o.org_id, o.cell_gb_seconds, o.edge_gb_seconds, o.drift, again)
                    for o in r.orgs]
    return out


def cell_gb_per_window(reports: Mapping[str, Sequence[Any]]) -> dict[int, Decimal]:
    """The cells' own GB-seconds per window, from each cell's first report of it."""
    out: dict[int, Decimal] = {}
    for posted in reports.values():
        seen: set[int] = set()
        for r in posted:
            if r.window_from in seen:
                continue
            seen.add(r.window_from)
            out[r.window_from] = out.get(r.window_from, Decimal(0)) + sum(
                (o.cell_gb_seconds for o in r.orgs), Decimal(0))
    return out
