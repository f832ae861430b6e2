"""The free tier's ports (CONTRACT section 10), beside `ports.py` and under the same rules:
typed Protocols, depending on the core only; adapters in chalicelib/adapters/{memory,dynamodb}/credits.py
and chalicelib/adapters/cell_push.py, under tests/contract/test_credit_store.py."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from chalicelib.core.credits import Account, Change, FreeTick, HaltedOrg, Notice, Pending


class CreditStore(Protocol):
    """The free tier: the tick ledger, the accounts (each change a version compare-and-set),
    the halted list and the outstanding halt/resume notices (docs/free-tier.md)."""

    @abstractmethod
    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        """On-time ticks: idempotent puts. Late ones: created only if new, marked for the late pass.
        Returns how many late ticks were new."""

    @abstractmethod
    def slot_ticks(self, slot_start: int) -> list[FreeTick]:
        """Every ledger item of a slot, strongly consistent (late-written ones with `late` set)."""

    @abstractmethod
    def late_free_ticks(self, limit: int = 10_000) -> list[FreeTick]:
        """Late ticks whose cost no account holds yet."""

    @abstractmethod
    def accounts(self, org_ids: list[str]) -> dict[str, Account]:
        """Stored accounts, strongly consistent (an org without one is absent)."""

    @abstractmethod
    def all_accounts(self) -> list[Account]: ...

    @abstractmethod
    def commit_account(
        self, change: Change, expected_version: int, cleared: Sequence[FreeTick] = (),
        grant_key: str | None = None,
    ) -> bool:
        """Atomically: store `change.account` (version expected_version + 1) if the stored version is
        still `expected_version`; clear the late marks of `cleared` (each still marked); record
        `grant_key` (not recorded yet); on a halt or resume, update the halted list and replace the
        org's notice. False (nothing written) if any condition failed."""

    @abstractmethod
    def grant_recorded(self, org_id: str, grant_key: str) -> bool: ...

    @abstractmethod
    def pending(self, org_id: str) -> Pending | None:
        """The org's entry in the summary, through the current layout (none: None)."""

    @abstractmethod
    def pending_layout(self) -> int:
        """How many shards the current summary has (0: none written yet)."""

    @abstractmethod
    def pending_shards(self, layout: int) -> dict[int, dict[str, Pending]]:
        """Every stored shard of that layout (an absent shard is absent)."""

    @abstractmethod
    def put_pending(self, layout: int, shard: int, entries: dict[str, Pending]) -> None:
        """Replace one shard's summary of open spend (advisory: accounts are the truth)."""

    @abstractmethod
    def set_pending_layout(self, layout: int) -> None:
        """Switch readers to `layout` (once every shard of it is written)."""

    @abstractmethod
    def halted_orgs(self) -> list[HaltedOrg]: ...

    @abstractmethod
    def notices(self) -> list[Notice]: ...

    @abstractmethod
    def record_push(self, notice: Notice, acked: set[str], done: bool) -> bool:
        """Save a push round's outcome for the org's notice if it is still `notice.seq`: the cells that
        acked (added), attempts and next_at; `done` drops the notice. False if a newer one replaced it."""


class CellPusher(Protocol):
    """Signed halt/resume pushes to a cell's control plane (CONTRACT section 10)."""

    @abstractmethod
    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        """POST the signed body; True only on a 2xx."""
