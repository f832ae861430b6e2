"""Fault hooks and call counts for in-memory adapters: explicit, no attribute magic.

An adapter calls `before(method)` when a public method starts and
`after(method, ticket)` once its write is done; a test arms a hook with
`fail_on` (raise) or `on` (run any action, e.g. wait for another thread).
`nth` counts the calls of that method made after the hook was armed, so a
test can warm a store up first and then say "the 2nd create_outbox_rows
raises after writing".

A `Crash` (a BaseException, as a killed Lambda is not an exception any
handler sees) leaves the handle dead: every later call on it raises `Crash`
too, because a killed process makes no further calls, not even its
`finally` blocks' release of a lease.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, TypeVar

from chalicelib.ports import StoreUnavailable

When = Literal["before", "after"]
T = TypeVar("T")


class Crash(BaseException):
    """The process was killed at this point (not an Exception: no handler in the code under test catches it)."""


@dataclass
class _Hook:
    method: str
    when: When
    first: int  # the call number (of `method`, since the store was built) that fires first
    last: int | None  # the last call number that fires; None: every call from `first` on
    action: Callable[[str, int], None]

    def fires(self, method: str, when: When, call: int) -> bool:
        return (method, when) == (self.method, self.when) and self.first <= call and (
            self.last is None or call <= self.last
        )


class Faults:
    def __init__(self, methods: Iterable[str]) -> None:
        self.methods = frozenset(methods)
        self._counts: Counter[str] = Counter()
        self._hooks: list[_Hook] = []
        self._dead = False
        self._lock = threading.Lock()

    # --- what tests call ---------------------------------------------------
    def on(
        self,
        method: str,
        action: Callable[[], None],
        nth: int = 1,
        when: When = "before",
        times: int | None = 1,
    ) -> None:
        """Run `action` at the nth call of `method` from now (and the `times - 1` calls after it; None: all)."""
        self._arm(method, lambda _m, _n: action(), nth, when, times)

    def fail_on(
        self,
        method: str,
        nth: int = 1,
        when: When = "before",
        exc: BaseException | type[BaseException] = StoreUnavailable,
        times: int | None = 1,
    ) -> None:
        """Raise `exc` at the nth call of `method` from now: before it touches the store, or after its write."""

        def fail(m: str, n: int) -> None:
            error = exc(f"injected fault: call {n} of {m}, {when}") if isinstance(exc, type) else exc
            if not isinstance(error, Exception):
                self._dead = True  # a crash: the process makes no further calls
            raise error

        self._arm(method, fail, nth, when, times)

    def calls(self, method: str) -> int:
        """How many times `method` was called on this handle (including calls that failed)."""
        self._check(method)
        with self._lock:
            return self._counts[method]

    def clear(self) -> None:
        """Disarm every hook and revive a crashed handle (counts are kept)."""
        with self._lock:
            self._hooks.clear()
            self._dead = False

    # --- what adapters call ------------------------------------------------
    def before(self, method: str) -> int:
        """Count the call and fire its `before` hooks; returns the call number for `after`."""
        with self._lock:
            self._counts[method] += 1
            call = self._counts[method]
            if self._dead:
                raise Crash(f"{method}: the process crashed earlier")
            hooks = [h for h in self._hooks if h.fires(method, "before", call)]
        self._fire(hooks, method, call)
        return call

    def after(self, method: str, call: int) -> None:
        with self._lock:
            hooks = [h for h in self._hooks if h.fires(method, "after", call)]
        self._fire(hooks, method, call)

    # --- internals -----------------------------------------------------------
    def _check(self, method: str) -> None:
        # A typo would arm a hook that never fires and a test that passes for the wrong reason.
        if method not in self.methods:
            raise ValueError(f"{method!r} is not a method of this port: {sorted(self.methods)}")

    def _arm(
        self, method: str, action: Callable[[str, int], None], nth: int, when: When, times: int | None
    ) -> None:
        self._check(method)
        if nth < 1 or (times is not None and times < 1):
            raise ValueError("nth and times count from 1")
        with self._lock:
            first = self._counts[method] + nth
            last = None if times is None else first + times - 1
            self._hooks.append(_Hook(method, when, first, last, action))

    @staticmethod
    def _fire(hooks: list[_Hook], method: str, call: int) -> None:
        # Outside the lock: an action may block (a barrier between racing threads).
        for hook in hooks:
            hook.action(method, call)


def hooked(faults: Faults, lock: AbstractContextManager[object], method: str, body: Callable[[], T]) -> T:
    """One adapter call: `before` hooks, the body under the tables' lock (atomic as one DynamoDB
    request), then `after` hooks. Hooks run outside the lock: one may wait for another thread's call."""
    call = faults.before(method)
    with lock:
        result = body()
    faults.after(method, call)
    return result
