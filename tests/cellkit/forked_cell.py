"""Real cell processes without an interpreter start each: a zygote that imports the kit once and forks.

``python -m cellkit run`` spends ~0.3 CPU-s importing before it runs a tick; a test that starts eight of them
(test_sigkill.py) spent most of its time there. The zygote runs ``python -m cellkit``'s own entry point in
each forked child, in a process of its own (its pid, its signal handlers, its database connections), so a
SIGKILL is the same as one sent to a started process. The zygote is single-threaded (forking is safe) and
reaps its children.

The protocol, one JSON line each way on the zygote's stdin/stdout: the test sends the child's environment;
the zygote answers ``{"pid": N}`` at once and ``{"exit": code}`` when the child has ended (negative: killed
by that signal, as subprocess reports it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]


def _child(env: dict[str, str]) -> int:
    os.environ.clear()
    os.environ.update(env)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # as started with stdout and stderr to DEVNULL; the zygote's pipes are not the child's
        os.dup2(null, fd)
    from cellkit.cli import app

    try:
        app(["run"], prog_name="python -m cellkit")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def serve() -> None:
    """The zygote's loop: fork a cell per request line, report its pid, then its end."""
    import cellkit.cli  # noqa: F401  (what every child would import: once, here)

    for line in sys.stdin:
        env = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(env)
            finally:
                os._exit(code)  # never back into the zygote's loop
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)


class Zygote:
    """The test's side: ``start(env)`` gives a running cell's pid, ``ended()`` waits for its exit code."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.cellkit.forked_cell import serve; serve()"],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.running: int | None = None

    def _answer(self, key: str) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the zygote ended (exit {self.proc.poll()})"
        return int(json.loads(line)[key])

    def start(self, env: dict[str, str]) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(env) + "\n")
        self.proc.stdin.flush()
        self.running = self._answer("pid")
        return self.running

    def ended(self) -> int:
        code = self._answer("exit")
        self.running = None
        return code

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.running is not None:  # the test failed with a cell still running
            os.kill(self.running, signal.SIGKILL)
            self.ended()
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the zygote's loop ends
        self.proc.wait(timeout=30)
