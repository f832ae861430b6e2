"""The free tier's credit accounts (CONTRACT section 10), as plain data and pure decisions.

A free tick is stored once as a small ledger item keyed by (slot, shard, event id),
its content only from the envelope, so a replay rewrites the same item: one
write unit per tick, no condition. The spend pass (services/credits.py) sums
the ledger per org and slot and moves an org's account forward with one
conditional write (a version compare-and-set), carrying per open slot what it
has already applied, so re-reading a slot applies only the difference. Every
amount is an integer of micro-cents.

Balance = max(0, seed + granted - spent): a tick that lands after the halt
still counts (the usage happened), so a later top-up repays it first.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from chalicelib.core.envelopes import Tick

MICRO = 1_000_000
# Ledger items of one slot spread over this many partitions (4 x ~1,000 WCU/s of free ticks: fewer
# queries per pass; a bigger fleet raises it).
# Changing either constant strands items already written: constants, not flags.
FREE_SHARDS = 4
FREE_SLOT_SECONDS = 900
# An account is written only when a slot closes or its spend exhausts it; meanwhile its open
# spend is published in a small `pending` summary the policy adds: one item per 32 active orgs
# (about 1 KB, one write unit), so its cost per pass follows the fleet's size.
ACCOUNT_SHARDS = 8
PENDING_ORGS_PER_SHARD = 32
MAX_PENDING_SHARDS = 1024
HALT_REASON = "credits_exhausted"
NoticeKind = Literal["halt", "resume"]


def to_micro(cents: Decimal | int | None) -> int:
    """Cents (a number on the wire) to integer micro-cents; finer digits round half-even."""
    if cents is None:
        return 0
    return int((Decimal(cents) * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def to_cents(micro: int) -> Decimal:
    return (Decimal(micro) / MICRO).quantize(Decimal("0.000001"))


def crc_shard(key: str, shards: int) -> int:
    # crc32, not hash(): Python's str hash is salted per process.
    return zlib.crc32(key.encode()) % shards


def slot_of(ts: Decimal | int, width: int = FREE_SLOT_SECONDS) -> int:
    return int(Decimal(ts) // width) * width


@dataclass(frozen=True)
class FreeTick:
    """One free tick in the ledger. `late`: its slot may already be closed by the pass."""

    event_id: str
    org_id: str
    slot_start: int
    cost_micro: int
    expires_at: int
    late: bool = False

    @property
    def shard(self) -> int:
        return crc_shard(self.event_id, FREE_SHARDS)


def free_tick(tick: Tick, org_id: str, retention: int, late_after: int) -> FreeTick:
    """The ledger item of a free tick: the slot of its own timestamp, its cost, nothing of ingest's."""
    slot = slot_of(tick.end)
    return FreeTick(
        event_id=tick.envelope.id,
        org_id=org_id,
        slot_start=slot,
        cost_micro=to_micro(tick.usage.cost_cents),
        expires_at=slot + FREE_SLOT_SECONDS + retention,
        late=slot < late_after,
    )


def free_late_cutoff(now: int, margin: int) -> int:
    """Slots starting before the returned instant may be closed already: ingest writes their ticks late.

    The pass closes slot s once s + width + grace <= now (grace = margin + 60); a write that starts
    more than `margin` (> the API Lambda's timeout) before that lands before the closing read.
    """
    return now + margin - free_grace(margin) - FREE_SLOT_SECONDS + 1


def free_grace(margin: int) -> int:
    return margin + 60


def slot_closed(slot_start: int, now: int, margin: int) -> bool:
    return slot_start + FREE_SLOT_SECONDS + free_grace(margin) <= now


@dataclass(frozen=True)
class Account:
    """A free org's credits. `applied`: per open slot, the micro-cents of it already in `spent`."""

    org_id: str
    seed_micro: int
    granted_micro: int = 0
    spent_micro: int = 0
    applied: Mapping[int, int] = field(default_factory=dict)
    # Slots before it are closed for this account: a slow pass's sums of them are never applied
    # (a faster pass applied them and dropped them from `applied`).
    applied_from: int = 0
    version: int = 0  # 0: not stored yet
    halted: bool = False
    halted_at: int = 0
    notice_seq: int = 0  # bumped by every halt and resume: the cells' push order
    ended: bool = False  # the org went pro: credits ended, the next free period starts at 0
    updated_at: int = 0

    @property
    def balance_micro(self) -> int:
        return max(0, self.seed_micro + self.granted_micro - self.spent_micro)

    @property
    def balance_cents(self) -> Decimal:
        return to_cents(self.balance_micro)


def new_account(org_id: str, seed_cents: Decimal | int) -> Account:
    return Account(org_id=org_id, seed_micro=to_micro(seed_cents))


@dataclass(frozen=True)
class Change:
    """An account's next state, and whether this write halts or resumes the org."""

    account: Account
    halts: bool = False
    resumes: bool = False


def _with_spend(account: Account, spend: int, now: int) -> Change:
    if account.ended:
        # Ticks stored while the org was free, counted after it went pro: recorded, but the credits
        # are over (the next free period starts at 0 whatever they cost) and a pro org never halts.
        return Change(replace(account, spent_micro=account.spent_micro + spend,
                              seed_micro=account.seed_micro + spend, updated_at=now))
    spent = replace(account, spent_micro=account.spent_micro + spend, updated_at=now)
    if spend > 0 and spent.balance_micro == 0 and not account.halted:
        # The one place a halt is decided: a spend with a cost that leaves nothing.
        return Change(replace(spent, halted=True, halted_at=now, notice_seq=account.notice_seq + 1), halts=True)
    return Change(spent)


def unapplied(account: Account, sums: Mapping[int, int]) -> int:
    """Micro-cents of these slot sums not in the account yet (a slot only ever grows)."""
    return sum(max(0, t - account.applied.get(s, 0)) for s, t in sums.items() if s >= account.applied_from)


def apply_slots(account: Account, sums: Mapping[int, int], keep_from: int, now: int) -> Change:
    """Apply the slot sums read now; keep `applied` only for slots the pass will read again."""
    floor = max(keep_from, account.applied_from)
    merged = {**account.applied, **{s: t for s, t in sums.items() if s >= account.applied_from}}
    applied = {s: max(t, account.applied.get(s, 0)) for s, t in merged.items() if s >= floor}
    change = _with_spend(replace(account, applied=applied, applied_from=floor), unapplied(account, sums), now)
    return change


def apply_late(account: Account, cost_micro: int, now: int) -> Change:
    """Stragglers of closed slots: each counted once by the transaction that clears its late mark."""
    return _with_spend(account, cost_micro, now)


def must_write(account: Account, sums: Mapping[int, int], closing: set[int]) -> bool:
    """Whether the pass writes the account now rather than only publishing its pending spend:
    a slot it is about to close carries unapplied spend, or the spend exhausts the balance."""
    if any(sums.get(s, 0) > account.applied.get(s, 0) for s in closing if s >= account.applied_from):
        return True
    spend = unapplied(account, sums)
    return spend > 0 and spend >= account.balance_micro


def grant(account: Account, micro: int, now: int) -> Change:
    """A top-up; it resumes a halted org once the balance is positive."""
    granted = replace(account, granted_micro=account.granted_micro + micro, updated_at=now)
    if account.halted and granted.balance_micro > 0:
        return Change(replace(granted, halted=False, notice_seq=account.notice_seq + 1), resumes=True)
    return Change(granted)


def restart_free(account: Account, now: int) -> Change:
    """The org is free again: from here its ticks spend (from 0 if its credits ended) and can halt it."""
    return Change(replace(account, ended=False, updated_at=now))


def end_credits(account: Account, now: int) -> Change:
    """The org became pro: no halt, and the free credits are over (a return to free starts at 0)."""
    ended = replace(account, seed_micro=account.spent_micro - account.granted_micro, ended=True, updated_at=now)
    if account.halted:
        return Change(replace(ended, halted=False, notice_seq=account.notice_seq + 1), resumes=True)
    return Change(ended)


@dataclass(frozen=True)
class Notice:
    """The latest halt or resume of an org, to push to every cell with a base_url until each acks."""

    org_id: str
    kind: NoticeKind
    seq: int
    at: int
    acked: frozenset[str] = frozenset()
    attempts: int = 0
    next_at: int = 0


def notice_for(change: Change, now: int) -> Notice | None:
    if change.halts:
        return Notice(change.account.org_id, "halt", change.account.notice_seq, now)
    if change.resumes:
        return Notice(change.account.org_id, "resume", change.account.notice_seq, now)
    return None


# Pushes failing this many times in a row raise the alarm (a cell that does not ack: docs/runbook.md).
PUSH_ALARM_ATTEMPTS = 5


def next_push_at(attempts: int, now: int) -> int:
    """Capped exponential backoff between pushes to cells that have not acked: 30 s .. 15 min."""
    return now + min(30 * 2 ** max(attempts - 1, 0), 900)


@dataclass(frozen=True)
class HaltedOrg:
    org_id: str
    halted_at: int
    reason: str = HALT_REASON


def pending_shard_count(orgs: int) -> int:
    """How many summary items hold `orgs` entries: a power of two, at least one, about 32 orgs each."""
    n = 1
    while n * PENDING_ORGS_PER_SHARD < orgs and n < MAX_PENDING_SHARDS:
        n *= 2
    return n


@dataclass(frozen=True)
class Pending:
    """What the pass has read but not yet written into an account (it is relative to `version`)."""

    micro: int
    version: int


def shown_balance(account: Account, pending: Pending | None) -> int:
    """The balance the policy route answers: the account less its open spend, if still current."""
    if pending is None or pending.version != account.version:
        return account.balance_micro
    return max(0, account.balance_micro - pending.micro)
