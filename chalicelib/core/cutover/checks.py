"""What every phase answers with: checks, and the exit code they make.

Exit codes of every subcommand: 0 all good, 1 a check failed (the output
names why), 2 operator error (bad argument, unreachable store), 3 not yet
(retry later: the cells are still draining, no live bucket has closed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_YET = 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    why: str
    wait: bool = False  # failing only because it is too early: the same command later may pass

    def body(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "why": self.why} | ({"retry_later": True} if self.wait else {})


def exit_code(checks: Sequence[Check]) -> int:
    failing = [c for c in checks if not c.ok]
    if not failing:
        return EXIT_OK
    return EXIT_NOT_YET if all(c.wait for c in failing) else EXIT_FAILED


def boundary_error(t: int, bucket: int) -> str | None:
    if t <= 0 or t % bucket:
        return f"T={t} is not a positive multiple of BUCKET_SECONDS={bucket}: the seam must fall on a bucket boundary"
    return None


def span(start: int, end: int) -> str:
    return f"[{start}, {end})"


@dataclass(frozen=True)
class StageFlags:
    """One stage of .chalice/config.json: its environment and each Lambda's overrides."""

    stage: str
    env: Mapping[str, str]
    functions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> str:
        return str(self.env.get(name, default))
