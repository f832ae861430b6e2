"""The decisions the cell-facing routes hand to services, on the in-memory adapters: an org's policy
(plan, memory cap, free-tier standing, cap-token), an org's record, and what cells report."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.cap_tokens import verify
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.core.credits import Change, new_account
from chalicelib.core.orgs import Org
from chalicelib.services.cell_reports import (
    InconsistentReport,
    cell_statuses,
    parity_reports,
    receive_cell_status,
    receive_parity_report,
)
from chalicelib.services.orgs import UnknownOrg, org_policy, put_org
from chalicelib.settings import Settings

NOW = 1_795_564_800


def test_an_unknown_org_has_no_policy(memory: MemoryStore, settings: Settings) -> None:
    with pytest.raises(UnknownOrg, match="org-x is not known"):
        org_policy(memory, MemoryCredits(), settings, "org-x", "cell-a", NOW)


def test_a_pro_org_gets_its_cap_and_a_token_for_the_cell_that_asked(memory: MemoryStore, settings: Settings) -> None:
    memory.put_org(Org("org-p", plan="pro", max_memory_gb=8))
    policy = org_policy(memory, MemoryCredits(), settings, "org-p", "cell-a", NOW)
    assert (policy.plan, policy.max_memory_mb, policy.halted, policy.balance_cents) == ("pro", 8192, False, None)
    assert policy.cap_token is not None
    token = verify(policy.cap_token, settings.secret("SESSION_JWT_SECRET"), NOW, "cell-a")
    assert (token.org_id, token.plan, token.cell_id) == ("org-p", "pro", "cell-a")
    assert "capToken" not in org_policy(memory, MemoryCredits(), settings, "org-p", None, NOW).body()


def test_a_free_org_shows_its_balance_and_a_halted_one_gets_no_token(memory: MemoryStore,
                                                                     settings: Settings) -> None:
    memory.put_org(Org("org-f"))
    credits = MemoryCredits()
    policy = org_policy(memory, credits, settings, "org-f", "cell-a", NOW)
    assert policy.max_memory_mb == 4096 and policy.balance_cents == settings.FREE_TIER_SEED_CENTS
    assert policy.cap_token is not None and not policy.halted
    account = new_account("org-f", settings.FREE_TIER_SEED_CENTS)
    assert credits.commit_account(Change(replace(account, halted=True, halted_at=NOW, version=1), halts=True), 0)
    policy = org_policy(memory, credits, settings, "org-f", "cell-a", NOW)
    assert policy.halted and policy.cap_token is None and policy.body()["halted"] is True


def test_put_org_keeps_the_fields_left_out(memory: MemoryStore) -> None:
    put_org(memory, "org-1", {"billing_mode": "unified", "plan": "pro", "max_memory_gb": 16}, NOW)
    org = put_org(memory, "org-1", {"billing_mode": "legacy"}, NOW + 1)
    assert (org.billing_mode, org.plan, org.max_memory_gb) == ("legacy", "pro", 16)


def _report(clean: bool, drift: str, signed_at: int = NOW) -> ParityReport:
    org = OrgParity("org-1", Decimal("1.0"), Decimal("1.2"), Decimal(drift))
    return ParityReport("cell-a", NOW - 3600, NOW, Decimal("0.05"), (org,), clean, signed_at, NOW)


def test_a_report_that_calls_itself_clean_above_its_tolerance_is_refused_and_not_stored() -> None:
    cells = MemoryCells()
    with pytest.raises(InconsistentReport, match="says clean but org org-1 drifts"):
        receive_parity_report(cells, _report(True, "0.2"), "test")
    assert parity_reports(cells, "cell-a", 0, NOW) == []
    assert receive_parity_report(cells, _report(False, "0.2"), "test")
    assert [r.clean for r in parity_reports(cells, "cell-a", 0, NOW)] == [False]
    assert not receive_parity_report(cells, _report(False, "0.2", signed_at=NOW - 1), "test")


def test_cell_statuses_come_back_by_cell_id_and_an_older_one_is_not_stored() -> None:
    cells = MemoryCells()
    for cell in ("cell-b", "cell-a"):
        assert receive_cell_status(cells, CellStatus(cell, "cell", True, NOW, 0, 0, NOW, NOW))
    assert not receive_cell_status(cells, CellStatus("cell-a", "edge", False, NOW, 0, 0, NOW - 5, NOW))
    assert [(s.cell_id, s.authority) for s in cell_statuses(cells)] == [("cell-a", "cell"), ("cell-b", "cell")]
