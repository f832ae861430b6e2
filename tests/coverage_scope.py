"""Which tests run traced by coverage in `make test`, and why the others do not.

Python 3.11 has no sys.monitoring: coverage's tracer is called on every function call of every module,
moto's, botocore's and Hypothesis's included, and roughly doubles a test's CPU (measured: the suite took
207 CPU-s traced, 121 untraced). The seeded simulation runs the same services hundreds of times over, one
scenario per seed, and the benches run whole fleets: past the first scenario of each simulation test they
trace lines already traced. So each simulation test's first parametrization runs traced and the rest, and
the benches, run with pytest-cov's `no_cover` (the test runs and asserts as before; only the tracer is off).

What this costs the printed figure was measured with per-test coverage contexts (`--cov-context=test`):
branch coverage of the core and the services 98.04 % with every test traced, 97.73 % with this scope.
It can only under-state what the whole suite covers, never over-state it.

Untraced too: the tests that drive the whole app again and again to assert something other than which
branch ran: the fuzz (Hypothesis: hundreds of examples through the same routes), the leak and lock sweeps
of tests/security (every route at DEBUG logging, every route in prod), the pipeline in tests/e2e, and
the checks of the repository itself (architecture, docs, hygiene). Traced, they cost ~22 CPU-s of
`make test` (fuzz 28.4 -> 16.2 CPU-s untraced, the two security sweeps 14.6 -> 8.1, e2e 3.9 -> 1.7).
Measured with per-test contexts over the whole suite traced, what only they reached in the core and the
services was 9 lines and 6 branches, all found by the fuzz (a tick without org_id, a webhook without a
customer or `created`, a parity window of non-integers, verify with no cell): tests/unit and
tests/services pin each by example now, so the printed figure lost nothing measurable. A single test may
carry `@pytest.mark.no_cover` itself when everything it reaches is reached by others (measured so).

pytest-cov's own pause is not enough under xdist: a worker parses the controller's arguments early, sees
`-n`, and starts a controller's coverage before its worker's; pausing the worker's resumes the other
(coverage keeps a stack), so the "untraced" tests still ran traced (checked: same CPU with and without
the marker). The wrapper below stops whatever coverage is still running for the test and restarts it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import coverage
import pytest

TESTS = Path(__file__).resolve().parent
FIRST_SCENARIO_ONLY = TESTS / "simulation"
UNTRACED = {TESTS / d for d in ("bench", "fuzz", "e2e", "architecture", "docs", "hygiene")}
UNTRACED_FILES = {TESTS / "security" / f for f in ("test_no_secret_leaks.py", "test_routes_locked.py")}


def first_parametrization(item: pytest.Item) -> bool:
    """The test with the first value of each of its parameters (whatever order pytest-randomly runs them in)."""
    callspec = getattr(item, "callspec", None)
    return callspec is None or not any(callspec.indices.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if UNTRACED & set(path.parents) or path in UNTRACED_FILES or (
                FIRST_SCENARIO_ONLY in path.parents and not first_parametrization(item)):
            item.add_marker(pytest.mark.no_cover)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Inside pytest-cov's own wrapper (trylast): it has paused its coverage; stop any other still running."""
    if item.get_closest_marker("no_cover") is None:
        yield
        return
    stopped: list[coverage.Coverage] = []
    while (running := coverage.Coverage.current()) is not None:
        running.stop()
        stopped.append(running)
    try:
        yield
    finally:
        for cov in reversed(stopped):  # the bottom of coverage's stack first, as they were started
            cov.start()
