"""In-memory CreditStore: the same answers as DynamoCredits, for logic tests and the simulation.

Each public method runs under one lock, atomic as one DynamoDB request or transaction is;
`handle()` gives a second process on the same tables with its own fault hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from chalicelib.adapters.memory.faults import Faults, hooked
from chalicelib.core.credits import (
    ACCOUNT_SHARDS,
    Account,
    Change,
    FreeTick,
    HaltedOrg,
    Notice,
    NoticeKind,
    Pending,
    crc_shard,
)
from chalicelib.credit_ports import CreditStore
from chalicelib.ports import StoreRejected

T = TypeVar("T")
MAX_TRANSACTION_ACTIONS = 100


@dataclass
class CreditTables:
    ledger: dict[int, dict[str, FreeTick]] = field(default_factory=dict)  # slot -> event id -> tick
    marked: set[tuple[int, str]] = field(default_factory=set)  # late ticks not counted yet (the index)
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: set[tuple[str, str]] = field(default_factory=set)
    pending: dict[tuple[int, int], dict[str, Pending]] = field(default_factory=dict)  # (layout, shard) -> entries
    layout: int = 0
    halted: dict[str, HaltedOrg] = field(default_factory=dict)
    notices: dict[str, Notice] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


class MemoryCredits(CreditStore):
    def __init__(self, tables: CreditTables | None = None, faults: Faults | None = None) -> None:
        self.tables = tables or CreditTables()
        self.faults = faults or Faults(CreditStore.__abstractmethods__)

    def handle(self, faults: Faults | None = None) -> MemoryCredits:
        return MemoryCredits(self.tables, faults)

    def _run(self, method: str, body: Callable[[], T]) -> T:
        return hooked(self.faults, self.tables.lock, method, body)

    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        def put() -> int:
            new_late = 0
            for t in {(t.slot_start, t.event_id): t for t in ticks}.values():
                slot = self.tables.ledger.setdefault(t.slot_start, {})
                if not t.late:
                    # Unconditional: the same envelope rewrites the same content.
                    slot[t.event_id] = t
                elif t.event_id not in slot:
                    slot[t.event_id] = t
                    self.tables.marked.add((t.slot_start, t.event_id))
                    new_late += 1
            return new_late

        return self._run("put_free_ticks", put)

    def slot_ticks(self, slot_start: int) -> list[FreeTick]:
        def read() -> list[FreeTick]:
            found = self.tables.ledger.get(slot_start, {}).values()
            return sorted(found, key=lambda t: (t.shard, t.event_id))

        return self._run("slot_ticks", read)

    def late_free_ticks(self, limit: int = 10_000) -> list[FreeTick]:
        def read() -> list[FreeTick]:
            found = [self.tables.ledger[s][e] for s, e in self.tables.marked]
            found.sort(key=lambda t: (t.shard, f"{t.slot_start:012d}#{t.event_id}"))
            return found[: max(limit, 1)]

        return self._run("late_free_ticks", read)

    def accounts(self, org_ids: list[str]) -> dict[str, Account]:
        wanted = sorted(set(org_ids))
        return self._run("accounts", lambda: {o: self.tables.accounts[o] for o in wanted if o in self.tables.accounts})

    def all_accounts(self) -> list[Account]:
        def read() -> list[Account]:
            return sorted(self.tables.accounts.values(), key=lambda a: (crc_shard(a.org_id, ACCOUNT_SHARDS), a.org_id))

        return self._run("all_accounts", read)

    def commit_account(
        self, change: Change, expected_version: int, cleared: Sequence[FreeTick] = (), grant_key: str | None = None
    ) -> bool:
        return self._run("commit_account", lambda: self._commit(change, expected_version, cleared, grant_key))

    def _commit(self, change: Change, expected: int, cleared: Sequence[FreeTick], grant_key: str | None) -> bool:
        account = change.account
        keys = [(t.slot_start, t.event_id) for t in cleared]
        if len(set(keys)) < len(keys) or len(keys) + 4 > MAX_TRANSACTION_ACTIONS:
            raise StoreRejected("commit_account: an item named twice, or over 100 actions in one transaction")
        stored = self.tables.accounts.get(account.org_id)
        if (stored.version if stored else 0) != expected:
            return False
        if any(k not in self.tables.marked for k in keys):
            return False
        if grant_key is not None and (account.org_id, grant_key) in self.tables.grants:
            return False
        self.tables.accounts[account.org_id] = replace(account, version=expected + 1)
        self.tables.marked.difference_update(keys)
        if grant_key is not None:
            self.tables.grants.add((account.org_id, grant_key))
        if change.halts:
            self.tables.halted[account.org_id] = HaltedOrg(account.org_id, account.halted_at)
        if change.resumes:
            self.tables.halted.pop(account.org_id, None)
        if change.halts or change.resumes:
            kind: NoticeKind = "halt" if change.halts else "resume"
            self.tables.notices[account.org_id] = Notice(
                account.org_id, kind, account.notice_seq, account.updated_at, next_at=account.updated_at
            )
        return True

    def grant_recorded(self, org_id: str, grant_key: str) -> bool:
        return self._run("grant_recorded", lambda: (org_id, grant_key) in self.tables.grants)

    def pending(self, org_id: str) -> Pending | None:
        def read() -> Pending | None:
            n = self.tables.layout
            return self.tables.pending.get((n, crc_shard(org_id, n)), {}).get(org_id) if n else None

        return self._run("pending", read)

    def pending_layout(self) -> int:
        return self._run("pending_layout", lambda: self.tables.layout)

    def pending_shards(self, layout: int) -> dict[int, dict[str, Pending]]:
        def read() -> dict[int, dict[str, Pending]]:
            return {s: dict(v) for (n, s), v in sorted(self.tables.pending.items()) if n == layout}

        return self._run("pending_shards", read)

    def put_pending(self, layout: int, shard: int, entries: dict[str, Pending]) -> None:
        def put() -> None:
            self.tables.pending[(layout, shard)] = dict(entries)

        self._run("put_pending", put)

    def set_pending_layout(self, layout: int) -> None:
        def put() -> None:
            self.tables.layout = layout

        self._run("set_pending_layout", put)

    def halted_orgs(self) -> list[HaltedOrg]:
        return self._run("halted_orgs", lambda: [self.tables.halted[o] for o in sorted(self.tables.halted)])

    def notices(self) -> list[Notice]:
        return self._run("notices", lambda: [self.tables.notices[o] for o in sorted(self.tables.notices)])

    def record_push(self, notice: Notice, acked: set[str], done: bool) -> bool:
        def record() -> bool:
            stored = self.tables.notices.get(notice.org_id)
            if stored is None or stored.seq != notice.seq:
                return False
            if done:
                del self.tables.notices[notice.org_id]
            else:
                self.tables.notices[notice.org_id] = replace(
                    stored, acked=stored.acked | acked, attempts=notice.attempts, next_at=notice.next_at
                )
            return True

        return self._run("record_push", record)
