"""An in-memory CellStore: plain dicts, for tests and simulations that need no durability.

Transactions copy the state on entry and restore it on an exception, so the
unit-of-work semantics match the SQL stores (the same contract suite runs on all).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from cellkit.core.ticker import Sandbox
from cellkit.core.usage import OrgRow, ScaleEvent, UsageRow
from cellkit.ports import AsideItem, Billable, BillableState, SpoolItem


@dataclass
class _State:
    spool: dict[str, SpoolItem] = field(default_factory=dict)  # insertion order = spool order
    aside: dict[str, AsideItem] = field(default_factory=dict)
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    events: dict[str, ScaleEvent] = field(default_factory=dict)
    orgs: dict[str, OrgRow] = field(default_factory=dict)
    usage: dict[tuple[str, int, str], UsageRow] = field(default_factory=dict)
    billable: dict[str, Billable] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    leases: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (holder, until_us)


class MemoryTx:
    def __init__(self, state: _State) -> None:
        self.st = state

    def spool_put(self, items: Sequence[SpoolItem]) -> None:
        for item in items:
            self.st.spool.setdefault(item.id, item)

    def sandbox_for_update(self, sandbox_id: str) -> Sandbox | None:
        return self.st.sandboxes.get(sandbox_id)  # the store's lock is held for the whole transaction

    def insert_sandbox(self, sandbox: Sandbox) -> bool:
        if sandbox.sandbox_id in self.st.sandboxes:
            return False
        self.st.sandboxes[sandbox.sandbox_id] = sandbox
        return True

    def change_sandbox(self, expected: Sandbox, new: Sandbox) -> bool:
        if new.sandbox_id != expected.sandbox_id:
            raise ValueError(f"a change cannot rename sandbox {expected.sandbox_id} to {new.sandbox_id}")
        if self.st.sandboxes.get(expected.sandbox_id) != expected:
            return False
        self.st.sandboxes[new.sandbox_id] = new
        return True

    def open_scale_event(self, event: ScaleEvent) -> bool:
        if event.event_id in self.st.events:
            return False
        self.st.events[event.event_id] = event
        return True

    def close_scale_events(self, sandbox_id: str, ended_us: int) -> None:
        for key, ev in list(self.st.events.items()):
            if ev.sandbox_id == sandbox_id and ev.ended_us is None:
                if ev.started_us >= ended_us:
                    del self.st.events[key]
                else:
                    self.st.events[key] = replace(ev, ended_us=ended_us)


class MemoryStore:
    def __init__(self) -> None:
        self.st = _State()
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        with self._lock:
            snapshot = copy.copy(self.st.__dict__) if self._depth == 0 else None
            if snapshot is not None:
                self.st = _State(**{k: copy.copy(v) for k, v in snapshot.items()})
                saved = _State(**snapshot)
            self._depth += 1
            try:
                yield MemoryTx(self.st)
            except BaseException:
                if snapshot is not None:
                    self.st = saved
                raise
            finally:
                self._depth -= 1

    # spool
    def spool_put(self, items: Sequence[SpoolItem]) -> None:
        with self.transaction() as tx:
            tx.spool_put(items)

    def spool_head(self, limit: int) -> list[SpoolItem]:
        with self._lock:
            return list(self.st.spool.values())[:limit]

    def spool_delete(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self.st.spool.pop(i, None)

    def spool_set_aside(self, ids: Sequence[str], reason: str, at: int) -> None:
        with self._lock:
            for i in ids:
                item = self.st.spool.pop(i, None)
                if item is not None:
                    self.st.aside.setdefault(i, AsideItem(i, item.body, reason, at))

    def spool_depth(self) -> int:
        return len(self.st.spool)

    def aside(self) -> list[AsideItem]:
        return sorted(self.st.aside.values(), key=lambda a: (a.at, a.id))

    def aside_replay(self, ids: Sequence[str]) -> int:
        with self._lock:
            moved = [self.st.aside.pop(i) for i in dict.fromkeys(ids) if i in self.st.aside]
            for item in moved:
                self.st.spool.setdefault(item.id, SpoolItem(item.id, item.body))
            return len(moved)

    def aside_discard(self, ids: Sequence[str]) -> int:
        with self._lock:
            return sum(self.st.aside.pop(i, None) is not None for i in dict.fromkeys(ids))

    def lease_acquire(self, name: str, holder: str, now_us: int, ttl_us: int, from_holder: str | None = None) -> bool:
        with self._lock:
            current = self.st.leases.get(name)
            if current is not None and current[0] not in (holder, from_holder) and current[1] > now_us:
                return False
            self.st.leases[name] = (holder, now_us + ttl_us)
            return True

    def lease_holder(self, name: str) -> str | None:
        current = self.st.leases.get(name)
        return None if current is None else current[0]

    def lease_release(self, name: str, holder: str) -> None:
        with self._lock:
            if self.st.leases.get(name, ("", 0))[0] == holder:
                del self.st.leases[name]

    # sandboxes and scale events
    def sandbox(self, sandbox_id: str) -> Sandbox | None:
        return self.st.sandboxes.get(sandbox_id)

    def running_sandboxes(self, worker_id: str | None = None) -> list[Sandbox]:
        return sorted(
            (s for s in self.st.sandboxes.values()
             if s.status == "running" and (worker_id is None or s.worker_id == worker_id)),
            key=lambda s: s.sandbox_id,
        )

    def scale_events(self, from_us: int, to_us: int) -> list[ScaleEvent]:
        found = [e for e in self.st.events.values()
                 if e.started_us < to_us and (e.ended_us is None or e.ended_us > from_us)]
        return sorted(found, key=lambda e: (e.started_us, e.event_id))

    def first_scale_event_us(self) -> int | None:
        return min((e.started_us for e in self.st.events.values()), default=None)

    # orgs
    def put_org(self, org: OrgRow) -> None:
        self.st.orgs[org.org_id] = org

    def orgs(self, org_ids: Sequence[str] | None = None) -> dict[str, OrgRow]:
        wanted = None if org_ids is None else set(org_ids)
        return {k: v for k, v in self.st.orgs.items() if wanted is None or k in wanted}

    # billing
    def put_usage(self, rows: Sequence[UsageRow]) -> None:
        for r in rows:
            self.st.usage[(r.org_id, r.bucket_start, r.meter)] = r

    def usage(self, from_bucket: int, to_bucket: int) -> list[UsageRow]:
        rows = [r for r in self.st.usage.values() if from_bucket <= r.bucket_start < to_bucket]
        return sorted(rows, key=lambda r: (r.bucket_start, r.org_id, r.meter))

    def put_billable(self, rows: Sequence[Billable]) -> int:
        new = 0
        for b in rows:
            if b.identifier not in self.st.billable:
                self.st.billable[b.identifier] = b
                new += 1
        return new

    def billable(self, state: BillableState, limit: int) -> list[Billable]:
        rows = sorted((b for b in self.st.billable.values() if b.state == state),
                      key=lambda b: (b.bucket_start, b.identifier))
        return rows[:limit]

    def mark_billable(self, identifier: str, state: BillableState, detail: str, at: int) -> None:
        row = self.st.billable.get(identifier)
        if row is not None:
            self.st.billable[identifier] = replace(row, state=state, detail=detail)

    def transition_billable(self, identifier: str, from_state: BillableState, to_state: BillableState, detail: str,
                            at: int) -> bool:
        with self._lock:
            row = self.st.billable.get(identifier)
            if row is None or row.state != from_state:
                return False
            self.st.billable[identifier] = replace(row, state=to_state, detail=detail)
            return True

    def count_billable(self, state: BillableState) -> int:
        return sum(1 for b in self.st.billable.values() if b.state == state)

    def cursor(self, name: str) -> int | None:
        return self.st.cursors.get(name)

    def set_cursor(self, name: str, value: int) -> None:
        self.st.cursors[name] = value

    def close(self) -> None:
        return None
