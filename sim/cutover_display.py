"""`make run`'s display: the console, and waiting with a progress bar over the run's buckets."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sim.seam_fleet import SeamLoop

console = Console(width=None if sys.stdout.isatty() else 130)
COLUMNS = (TextColumn("{task.description}"), BarColumn(), TextColumn("bucket {task.completed:.0f}/{task.total}"),
           TextColumn("rollups {task.fields[runs]}  reports {task.fields[reports]}  spool {task.fields[spool]}"),
           TimeElapsedColumn())


@dataclass
class Ui:
    progress: Progress
    task: Any
    b0: int
    bucket: int
    fleet: SeamLoop

    def wait_until(self, at: float, phase: str) -> None:
        while time.time() < at:
            if self.fleet.error is not None:
                raise RuntimeError(f"the fleet failed: {self.fleet.error!r}") from self.fleet.error
            self.update(phase)
            time.sleep(0.2)
        self.update(phase)

    def update(self, phase: str) -> None:
        done = max(0.0, (time.time() - self.b0) / self.bucket)
        spool = sum(c.spool_depth() for c in self.fleet.cells.values())
        self.progress.update(self.task, completed=done, description=f"[bold]{phase}[/bold]",
                             runs=len(self.fleet.runs), spool=spool,
                             reports=sum(len(c.reports) for c in self.fleet.cells.values()))

    def say(self, text: str) -> None:
        self.progress.console.print(text)


def next_boundary(at: float, bucket: int) -> int:
    return int(-(-at // bucket) * bucket)
