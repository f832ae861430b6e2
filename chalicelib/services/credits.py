"""The free tier's decisions over the credit store: the spend pass, top-ups, the end of credits, views.

The spend pass (every minute, and at once after POST /run) reads the ledger's open slots
(strongly consistent), sums each org's ticks per slot, and moves an account only when it must:
a slot it closes carries spend not applied yet, or the spend exhausts the balance (the halt).
Otherwise it publishes the org's open spend in the pending summary, which the policy route
subtracts. Each account write is one compare-and-set on its version; a lost race re-reads the
account and re-applies only what is still missing, so any number of passes, crashed or racing,
spend each tick once. Stragglers (ticks of slots that may be closed) are counted by the late step,
each in the same transaction that clears its late mark. docs/free-tier.md has the whole argument.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.core.credits import (
    FREE_SLOT_SECONDS,
    Account,
    Change,
    FreeTick,
    HaltedOrg,
    Pending,
    apply_late,
    apply_slots,
    crc_shard,
    end_credits,
    grant,
    must_write,
    new_account,
    pending_shard_count,
    restart_free,
    shown_balance,
    slot_closed,
    slot_of,
    to_cents,
    to_micro,
    unapplied,
)
from chalicelib.credit_ports import CreditStore
from chalicelib.observability import logger
from chalicelib.operator_ports import FreeStatus
from chalicelib.ports import RunControl
from chalicelib.settings import Settings

CURSOR = "credits"
# A first pass starts this far back: the pass runs every minute, so a day covers any deployment gap.
FIRST_LOOKBACK_SECONDS = 86_400
LATE_CHUNK = 90  # + account, grant, halted, notice: within TransactWriteItems' 100 actions
CAS_ATTEMPTS = 8


class CreditConflict(Exception):
    """An account kept changing under every attempt: the caller answers 503 and retries."""


@dataclass
class PassResult:
    slots: int = 0
    ticks: int = 0
    written: int = 0
    pending: int = 0
    late: int = 0
    halted: list[str] = field(default_factory=list)
    conflicts: int = 0
    cursor: int = 0

    def body(self) -> dict[str, Any]:
        return {"slots": self.slots, "ticks": self.ticks, "accountsWritten": self.written,
                "pendingOrgs": self.pending, "late": self.late, "halted": self.halted,
                "conflicts": self.conflicts, "cursor": self.cursor}


def _account(credits: CreditStore, org_id: str, settings: Settings) -> Account:
    return credits.accounts([org_id]).get(org_id) or new_account(org_id, settings.FREE_TIER_SEED_CENTS)


def _commit(credits: CreditStore, account: Account, settings: Settings, decide: Any,
            cleared: list[FreeTick] | None = None) -> Change | None:
    """Compare-and-set `decide(account)` until it holds; None if every attempt lost a race."""
    for _ in range(CAS_ATTEMPTS):
        change: Change = decide(account)
        if credits.commit_account(change, account.version, cleared or []):
            return change
        account = _account(credits, account.org_id, settings)
    return None


def _slot_sums(credits: CreditStore, slots: list[int], result: PassResult) -> dict[str, dict[int, int]]:
    sums: dict[str, dict[int, int]] = defaultdict(dict)
    for slot in slots:
        for t in credits.slot_ticks(slot):
            if not t.late:  # late-written ticks are the late step's, always
                sums[t.org_id][slot] = sums[t.org_id].get(slot, 0) + t.cost_micro
                result.ticks += 1
    return sums


def run_spend_pass(control: RunControl, credits: CreditStore, settings: Settings, now: int) -> PassResult:
    result = PassResult()
    margin = settings.LATE_MARGIN_SECONDS
    cursor = control.cursor(CURSOR)
    if cursor is None:
        cursor = slot_of(now - FIRST_LOOKBACK_SECONDS)
    slots = list(range(cursor, slot_of(now) + FREE_SLOT_SECONDS, FREE_SLOT_SECONDS))
    closing = {s for s in slots if slot_closed(s, now, margin)}
    keep_from = next((s for s in slots if s not in closing), slots[-1] + FREE_SLOT_SECONDS)
    result.slots = len(slots)
    sums = _slot_sums(credits, slots, result)
    stored = credits.accounts(list(sums))
    pending: dict[str, Pending] = {}
    for org_id, org_sums in sorted(sums.items()):
        account = stored.get(org_id) or new_account(org_id, settings.FREE_TIER_SEED_CENTS)
        if not must_write(account, org_sums, closing):
            if unapplied(account, org_sums):
                pending[org_id] = Pending(unapplied(account, org_sums), account.version)
            continue
        change = _commit(credits, account, settings, lambda a, s=org_sums: apply_slots(a, s, keep_from, now))
        if change is None:
            result.conflicts += 1
            continue
        result.written += 1
        _note(change, result)
    if not result.conflicts:
        # Every closing slot's spend is in its accounts: it is never read again (written only when it moves).
        if keep_from != cursor:
            control.advance_cursor(CURSOR, keep_from)
        result.cursor = keep_from
    _late_step(credits, settings, now, result)
    _publish_pending(credits, pending)
    result.pending = len(pending)
    return result


def _late_step(credits: CreditStore, settings: Settings, now: int, result: PassResult) -> None:
    by_org: dict[str, list[FreeTick]] = defaultdict(list)
    for t in credits.late_free_ticks():
        by_org[t.org_id].append(t)
    for org_id, ticks in sorted(by_org.items()):
        for i in range(0, len(ticks), LATE_CHUNK):
            chunk = ticks[i : i + LATE_CHUNK]
            cost = sum(t.cost_micro for t in chunk)
            change = _commit(credits, _account(credits, org_id, settings), settings,
                             lambda a, c=cost: apply_late(a, c, now), cleared=chunk)
            if change is None:  # another pass counted them (their marks are gone), or a race: next pass
                result.conflicts += 1
                continue
            result.late += len(chunk)
            _note(change, result)


def _note(change: Change, result: PassResult) -> None:
    if change.halts:
        result.halted.append(change.account.org_id)
        logger.warning("free_org_halted", extra={"org_id": change.account.org_id, "seq": change.account.notice_seq,
                                                  "spent_micro": change.account.spent_micro})


def _publish_pending(credits: CreditStore, pending: dict[str, Pending]) -> None:
    """Write the summary's shards that changed; a new layout (the fleet grew or shrank) is switched to
    only once every shard of it is written, so a reader always finds a whole summary."""
    current = credits.pending_layout()
    layout = pending_shard_count(len(pending)) if pending or current else 0
    if not layout:
        return
    shards: dict[int, dict[str, Pending]] = defaultdict(dict)
    for org_id, p in pending.items():
        shards[crc_shard(org_id, layout)][org_id] = p
    stored = credits.pending_shards(layout)  # of an older use of this layout too: stale shards are rewritten
    for shard in range(layout):
        if shards.get(shard, {}) != stored.get(shard, {}):
            credits.put_pending(layout, shard, shards.get(shard, {}))
    if layout != current:
        credits.set_pending_layout(layout)


@dataclass(frozen=True)
class GrantResult:
    org_id: str
    key: str
    applied: bool  # False: the key was granted before (nothing changed)
    resumed: bool
    balance_cents: Decimal


def grant_credits(credits: CreditStore, settings: Settings, org_id: str, cents: Decimal, key: str,
                  now: int) -> GrantResult:
    """A top-up, once per key; it resumes a halted org whose balance it makes positive."""
    micro = to_micro(cents)
    if micro <= 0:
        raise ValueError(f"a grant must be a positive number of cents, not {cents}")
    for _ in range(CAS_ATTEMPTS):
        account = _account(credits, org_id, settings)
        if credits.grant_recorded(org_id, key):
            return GrantResult(org_id, key, False, False, account.balance_cents)
        change = grant(account, micro, now)
        if credits.commit_account(change, account.version, [], grant_key=key):
            if change.resumes:
                logger.info("free_org_resumed", extra={"org_id": org_id, "by": "grant", "key": key})
            return GrantResult(org_id, key, True, change.resumes, change.account.balance_cents)
    raise CreditConflict(f"account {org_id} kept changing during the grant")


def end_free_credits(credits: CreditStore, settings: Settings, org_id: str, now: int) -> bool:
    """The org became pro: clear any halt, end the free credits (once). True if it resumed the org."""
    account = _account(credits, org_id, settings)
    if account.ended and not account.halted:
        return False
    change = _commit(credits, account, settings, lambda a: end_credits(a, now))
    if change is None:
        raise CreditConflict(f"account {org_id} kept changing while its credits ended")
    if change.resumes:
        logger.info("free_org_resumed", extra={"org_id": org_id, "by": "pro"})
    return change.resumes


def restart_free_credits(credits: CreditStore, settings: Settings, org_id: str, now: int) -> None:
    """The org went back to free: its next free tick with a cost halts it if its credits ended."""
    account = credits.accounts([org_id]).get(org_id)
    if account is None or not account.ended:
        return
    if _commit(credits, account, settings, lambda a: restart_free(a, now)) is None:
        raise CreditConflict(f"account {org_id} kept changing while it went back to free")


def sync_plan(credits: CreditStore, settings: Settings, org_id: str, plan: str, now: int) -> None:
    """After a plan change (the webhook): pro ends the free credits and clears a halt; free restarts them."""
    if plan == "pro":
        end_free_credits(credits, settings, org_id, now)
    else:
        restart_free_credits(credits, settings, org_id, now)


@dataclass(frozen=True)
class OrgCredits:
    org_id: str
    balance_cents: Decimal
    halted: bool
    halted_at: int
    seed_cents: Decimal
    granted_cents: Decimal
    spent_cents: Decimal
    pending_cents: Decimal

    def body(self) -> dict[str, Any]:
        return {"org_id": self.org_id, "balance_cents": self.balance_cents, "halted": self.halted,
                "halted_at": self.halted_at or None, "seed_cents": self.seed_cents,
                "granted_cents": self.granted_cents, "spent_cents": self.spent_cents,
                "pending_cents": self.pending_cents}


def org_credits(credits: CreditStore, settings: Settings, org_id: str) -> OrgCredits:
    """An org's credits as the policy route and `credits show` answer them (open spend included)."""
    account = _account(credits, org_id, settings)
    pending = credits.pending(org_id)
    shown = shown_balance(account, pending)
    open_spend = account.balance_micro - shown
    return OrgCredits(org_id, to_cents(shown), account.halted, account.halted_at, to_cents(account.seed_micro),
                      to_cents(account.granted_micro), to_cents(account.spent_micro + open_spend),
                      to_cents(open_spend))


def halted_orgs(credits: CreditStore) -> list[HaltedOrg]:
    return credits.halted_orgs()


class CreditFreeStatus(FreeStatus):
    """The operator page's `free` section (services/status.py) over the credit store."""

    def __init__(self, credits: CreditStore) -> None:
        self.credits = credits

    def halted_orgs(self, limit: int = 50) -> list[str]:
        return [h.org_id for h in self.credits.halted_orgs()][:max(limit, 0)]

    def lowest_balances(self, limit: int = 10) -> list[tuple[str, Decimal]]:
        """(org id, balance in dollars), lowest first: stored accounts (open spend not included)."""
        accounts = sorted(self.credits.all_accounts(), key=lambda a: (a.balance_micro, a.org_id))
        return [(a.org_id, a.balance_cents / 100) for a in accounts[:max(limit, 0)]]


def free_status(credits: CreditStore, lowest: int = 10) -> dict[str, Any]:
    """The status page's `free` section: the halted orgs and the lowest balances."""
    accounts = sorted(credits.all_accounts(), key=lambda a: (a.balance_micro, a.org_id))
    return {
        "halted_orgs": [{"org_id": h.org_id, "halted_at": h.halted_at, "reason": h.reason}
                        for h in credits.halted_orgs()],
        "lowest_balances": [{"org_id": a.org_id, "balance_cents": a.balance_cents, "halted": a.halted}
                            for a in accounts[:lowest]],
        "notices_outstanding": len(credits.notices()),
    }
