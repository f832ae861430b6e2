"""`make run-under-load`: is `make run` exact while every core is kept busy by another process?

Starts one busy loop per core (plain Python processes spinning, not niced: they compete with
the run as a CI neighbour or a laptop's other work would), runs `make run` RUNS times (3 by default) and then
`make test-e2e`, stops the busy loops, and reports each command's exit code, wall time and CPU seconds (its
own process tree's) beside the busy loops' CPU seconds. `make run` exits 0 only when every org and meter is
exact (Stripe = ground truth, each bucket billed by its side of T only). Exit 1 if any command failed.
Output of each command: out/under-load/<name>.log (and each run's report and log beside it); the summary:
out/under-load/summary.json.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parent.parent
RUN_OUTPUT = (ROOT / "out" / "cutover-report.json", ROOT / "out" / "cutover-run.log")
# A busy loop that ends with its parent: if this script is killed, its loops do not spin on for ever.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(10**6): pass"


@dataclass(frozen=True)
class Outcome:
    name: str
    exit_code: int
    wall_s: float
    cpu_s: float  # user + system of the command's process tree


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(name: str, argv: list[str], logs: Path, keep: tuple[Path, ...] = ()) -> Outcome:
    """Run one command to its end (its output to a log file); wall time and the CPU its tree used. The files in
    ``keep`` it wrote (make run's report and log, overwritten by the next run) are copied beside its log."""
    cpu, started = children_cpu(), time.time()
    with (logs / f"{name}.log").open("w") as out:
        code = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    for path in keep:
        if path.exists() and path.stat().st_mtime >= started:
            shutil.copy(path, logs / f"{name}.{path.name}")
    return Outcome(name, code, round(time.time() - started, 1), round(children_cpu() - cpu, 1))


def busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]


def stop(loops: list[subprocess.Popen[bytes]]) -> float:
    """Stop the busy loops (only these processes, by their own handles); the CPU seconds they burned."""
    cpu = children_cpu()
    for proc in loops:
        proc.terminate()
    for proc in loops:
        proc.wait(10)
    return round(children_cpu() - cpu, 1)


def main(
    runs: int = typer.Option(3, help="How many times to run `make run`."),
    e2e: bool = typer.Option(True, help="Also run `make test-e2e` under the same load."),
    busy: int = typer.Option(os.cpu_count() or 1, help="Busy-loop processes (default: one per core)."),
    out: Path = typer.Option(ROOT / "out" / "under-load", help="Where the logs and summary.json go."),
) -> None:
    """Run `make run` (and `make test-e2e`) while `busy` other processes keep every core busy."""
    out.mkdir(parents=True, exist_ok=True)
    commands = [(f"make-run-{i + 1}", ["make", "run"]) for i in range(runs)]
    if e2e:
        commands.append(("make-test-e2e", ["make", "test-e2e"]))
    loops = busy_loops(busy)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        for name, argv in commands:
            outcomes.append(timed(name, argv, out, RUN_OUTPUT))
            print(f"{name}: exit {outcomes[-1].exit_code}, {outcomes[-1].wall_s} s wall, "
                  f"{outcomes[-1].cpu_s} s CPU", flush=True)
    finally:
        busy_cpu = stop(loops)
    wall = round(time.monotonic() - started, 1)
    summary = {"cores": os.cpu_count(), "busy_loops": busy, "busy_loops_cpu_s": busy_cpu, "wall_s": wall,
               "commands": [asdict(o) for o in outcomes], "all_passed": all(o.exit_code == 0 for o in outcomes)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{busy} busy loops on {os.cpu_count()} cores burned {busy_cpu} s CPU over {wall} s; "
          f"{sum(o.exit_code == 0 for o in outcomes)}/{len(outcomes)} commands passed ({out / 'summary.json'})")
    raise typer.Exit(0 if summary["all_passed"] else 1)


if __name__ == "__main__":
    typer.run(main)
