"""The rollup end to end on DynamoDB (moto): roll, stragglers, parity and the lease.

Its logic (BILL_FROM, shadow/live, crashes at every step, racing runs, Stripe
outcomes) is tested fast on the in-memory store in
tests/services/test_rollup_service.py; the scenarios both run are written once, in
tests/rollup_scenarios.py; tests/contract/ holds both stores to the same answers.
"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.items import outbox_from_item
from chalicelib.bootstrap import Container
from chalicelib.core.outbox import OutboxRow
from tests.conftest import PREFIX
from tests.fakes.stripe import FakeStripe
from tests.rollup_scenarios import (
    concurrent_run_is_skipped_by_the_lease,
    live_run_sends_once_and_replay_changes_nothing,
    parity_counts_a_backlog_delivered_after_its_hour_closed,
    shadow_roll_writes_rows_and_sends_nothing,
    straggler_is_billed_as_a_delta_once,
)


def rows(dynamodb: Any) -> dict[str, OutboxRow]:
    """Every outbox row, read from the table itself (the port has no "all rows" read)."""
    items = dynamodb.scan(TableName=f"{PREFIX}-outbox", ConsistentRead=True)["Items"]
    return {r.id: r for r in map(outbox_from_item, items)}


def test_shadow_roll_writes_rows_and_sends_nothing(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe, dynamodb: Any
) -> None:
    shadow_roll_writes_rows_and_sends_nothing(svc, clock, fake, lambda: rows(dynamodb))


def test_live_run_sends_once_and_replay_changes_nothing(
    svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe, dynamodb: Any
) -> None:
    live_run_sends_once_and_replay_changes_nothing(svc, clock, fake)
    assert [r.state for r in rows(dynamodb).values()] == ["sent", "sent"]


def test_straggler_is_billed_as_a_delta_once(svc: Container, clock: FixedClock, orgs: None, fake: FakeStripe) -> None:
    straggler_is_billed_as_a_delta_once(svc, clock, fake)


def test_concurrent_run_is_skipped_by_the_lease(svc: Container, clock: FixedClock, orgs: None) -> None:
    concurrent_run_is_skipped_by_the_lease(svc, clock)


def test_parity_counts_a_backlog_delivered_after_its_hour_closed_before_and_after_the_sweep(
    svc: Container, clock: FixedClock, orgs: None
) -> None:
    parity_counts_a_backlog_delivered_after_its_hour_closed(svc, clock)
