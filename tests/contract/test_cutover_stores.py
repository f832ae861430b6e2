"""The cutover's stores under contract: what cells report (CellStore) and the seam's reads (SeamReader), and
the cutover operations themselves (drain, verify, rollback) run on them, each test once on the in-memory
adapters and once on DynamoDB (moto), with the same assertions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.dynamodb.cells import DynamoCells
from chalicelib.adapters.dynamodb.seam import DynamoSeam
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.accounts import MemoryAccounts
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.seam import MemorySeam
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.core.cutover.checks import EXIT_FAILED, EXIT_NOT_YET, EXIT_OK, StageFlags
from chalicelib.core.cutover.preflight import WebhookEndpoint
from chalicelib.core.meter_events import CancelResult
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.samples import Sample
from chalicelib.services import cutover_ops
from chalicelib.settings import Settings
from tests.conftest import PREFIX, T0

H = 3600
T = T0 + 10 * H
RETENTION = 45 * 86400
METER = "sandbox_compute_sandbox_1gb"


@dataclass
class CutoverStripeDouble:
    """Stripe as the cutover sees it: cancels a meter event it was sent under 24 h ago, refuses the rest."""

    refuse: frozenset[str] = frozenset()
    cancelled: list[str] | None = None

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return []

    def cancel_meter_event(self, event_name: str, identifier: str) -> CancelResult:
        if identifier in self.refuse:
            return CancelResult(False, "older than 24 h")
        self.cancelled = [*(self.cancelled or []), identifier]
        return CancelResult(True)


@pytest.fixture(params=["memory", "dynamodb"])
def svc(request: pytest.FixtureRequest, settings: Settings) -> Container:
    """Container whose store, cells and seam are the in-memory adapters, or the DynamoDB ones on moto."""
    clock = FixedClock(T + 6 * H)
    if request.param == "memory":
        store = MemoryStore(retention_seconds=RETENTION)
        return Container(settings=settings, store=store, archive=MemoryArchive(), clock=clock,
                        account_store=MemoryAccounts(), cell_store=MemoryCells(), seam_reader=MemorySeam(store))
    dynamodb: Any = request.getfixturevalue("dynamodb")
    dynamo = DynamoStore(dynamodb, PREFIX, RETENTION)
    return Container(settings=settings, store=dynamo, archive=MemoryArchive(), clock=clock,
                    account_store=DynamoAccounts(dynamodb, PREFIX), cell_store=DynamoCells(dynamodb, PREFIX),
                    seam_reader=DynamoSeam(dynamo))


def status(svc: Container, cell_id: str, bt: int, authority: str = "edge", running: bool = False,
           pending: int = 0, signed_at: int | None = None) -> bool:
    at = svc.now() if signed_at is None else signed_at
    return svc.cells().put_cell_status(CellStatus(cell_id, authority, running, bt, pending, 0,  # type: ignore[arg-type]
                                                  at, svc.now()))


def row(svc: Container, org: str, b: int, state: str = "sent", sent_at: int | None = None) -> OutboxRow:
    made = OutboxRow(f"{org}:{b}:{METER}", org, b, b + H, METER, Decimal("3.25"), "first",  # type: ignore[arg-type]
                     state, sent_at=sent_at if state in ("sent", "cancelled") else None)
    assert svc.store.create_outbox_rows([made]) == 1
    return made


def report(cell_id: str, start: int, signed_at: int, clean: bool = True) -> ParityReport:
    return ParityReport(cell_id, start, start + H, Decimal("0.02"),
                        (OrgParity("o", Decimal(10), Decimal(10), Decimal("0.001")),), clean, signed_at, signed_at)


# --- CellStore --------------------------------------------------------------------------------------

def test_a_newer_signed_report_or_status_wins_and_an_older_retry_never_replaces_it(svc: Container) -> None:
    cells = svc.cells()
    assert cells.put_parity_report(report("c1", T, signed_at=200, clean=False))
    assert cells.put_parity_report(report("c1", T, signed_at=300))
    assert not cells.put_parity_report(report("c1", T, signed_at=250, clean=False))
    assert [r.clean for r in cells.parity_reports("c1", T, T + H)] == [True]
    assert status(svc, "c1", T, signed_at=200) and status(svc, "c1", T + H, signed_at=300)
    assert not status(svc, "c1", T - H, signed_at=250)
    assert [(c.cell_id, c.billed_through) for c in cells.cell_statuses()] == [("c1", T + H)]


def test_parity_reports_are_those_starting_in_the_window_oldest_first(svc: Container) -> None:
    cells = svc.cells()
    for start in (T + 2 * H, T - H, T, T + H):
        cells.put_parity_report(report("c1", start, signed_at=start))
    cells.put_parity_report(report("c2", T, signed_at=T))
    assert [r.window_from for r in cells.parity_reports("c1", T, T + 2 * H)] == [T, T + H]
    assert cells.parity_reports("c3", T, T + H) == []


# --- SeamReader -------------------------------------------------------------------------------------

def test_bucket_rows_are_every_row_of_those_buckets_whatever_its_state(svc: Container) -> None:
    a = row(svc, "org-a", T, sent_at=T + H)
    b = row(svc, "org-b", T, state="pending")
    c = row(svc, "org-a", T + H, state="shadow")
    row(svc, "org-a", T + 2 * H, sent_at=T + 3 * H)
    assert [r.id for r in svc.seam().bucket_rows([T + H, T])] == [a.id, b.id, c.id]
    assert svc.seam().bucket_rows([T - H]) == []


def test_org_cells_names_the_cells_each_orgs_samples_came_from(svc: Container) -> None:
    start = Decimal(T)

    def sample(event: str, org: str, cell: str) -> Sample:
        return Sample(event, org, "sbx", cell, "w1", 1024, 1, T, start, start + 20, Decimal(20), T + RETENTION)

    svc.store.put_samples([sample("e1", "org-a", "cell-a"), sample("e2", "org-a", "cell-b"),
                           sample("e3", "org-b", "cell-b"), sample("e4", "org-c", "cell-a")])
    assert svc.seam().org_cells(T, {"org-a", "org-b", "org-z"}) == {
        ("org-a", T): frozenset({"cell-a", "cell-b"}), ("org-b", T): frozenset({"cell-b"})}
    assert svc.seam().org_cells(T + H, {"org-a"}) == {}


def test_the_oldest_pending_row_is_found(svc: Container) -> None:
    assert svc.seam().oldest_pending_bucket_end() is None
    row(svc, "org-a", T + 2 * H, state="pending")
    row(svc, "org-b", T + H, state="pending")
    row(svc, "org-c", T, sent_at=T + H)
    assert svc.seam().oldest_pending_bucket_end() == T + 2 * H


# --- the cutover operations, on either store ---------------------------------------------------------

FLAGS = StageFlags("dev", {"SHADOW": "false", "BILL_FROM": str(T), "BUCKET_SECONDS": "3600", "GRACE_SECONDS": "600"})


def test_drain_waits_then_passes_then_refuses_t_too_early(svc: Container) -> None:
    status(svc, "cell-a", T - H, authority="cell", running=True)
    assert cutover_ops.drain(svc, T, 1800).code == EXIT_NOT_YET
    status(svc, "cell-a", T, authority="cell", running=True)
    assert cutover_ops.drain(svc, T, 1800).code == EXIT_OK
    status(svc, "cell-a", T + H, authority="cell", running=True)
    outcome = cutover_ops.drain(svc, T, 1800)
    assert outcome.code == EXIT_FAILED and "too early" in outcome.checks[0].why


def test_verify_passes_on_a_clean_seam_and_names_a_bucket_billed_twice(svc: Container) -> None:
    for b in range(T, T + 5 * H, H):
        row(svc, "org-a", b, sent_at=b + H + 900)
    status(svc, "cell-a", T)
    clean = cutover_ops.verify(svc, svc.seam(), FLAGS, T, 1800)
    assert clean.code == EXIT_OK, [c.why for c in clean.checks if not c.ok]
    status(svc, "cell-b", T + 2 * H, authority="cell", running=True)  # still billing past T
    broken = cutover_ops.verify(svc, svc.seam(), FLAGS, T, 1800)
    both = [b["bucket_start"] for b in broken.data["buckets"] if b["verdict"] == "both"]
    assert broken.code == EXIT_FAILED and both == [T, T + H]


def test_rollback_cancels_demotes_and_lists_the_rest_and_is_safe_to_rerun(svc: Container) -> None:
    now = T + 40 * H
    svc.clock.set(now)  # type: ignore[attr-defined]
    old = row(svc, "org-a", T, sent_at=T + H + 900)  # 38 h ago: too late to cancel
    recent = row(svc, "org-a", T + 38 * H, sent_at=now - H + 900)
    refused = row(svc, "org-b", T + 37 * H, sent_at=now - H)
    mine = row(svc, "org-a", T + 39 * H, sent_at=now - 100)  # a bucket the cells did not bill: kept
    waiting = row(svc, "org-c", T + 38 * H, state="pending")
    status(svc, "cell-a", T + 39 * H, authority="cell", running=True)  # the cells took billing back
    stripe = CutoverStripeDouble(refuse=frozenset({refused.id}))

    outcome = cutover_ops.rollback(svc, svc.seam(), stripe, T)
    assert [r["id"] for r in outcome.data["cancel"]] == [recent.id] and stripe.cancelled == [recent.id]
    assert sorted(r["id"] for r in outcome.data["manual_credit"]) == sorted([old.id, refused.id])
    assert [r["id"] for r in outcome.data["demote"]] == [waiting.id]
    states = [svc.store.get_outbox_row(r.id).state for r in (recent, old, refused, mine, waiting)]  # type: ignore[union-attr]
    assert states == ["cancelled", "sent", "sent", "sent", "shadow"]

    again = cutover_ops.rollback(svc, svc.seam(), stripe, T)
    assert again.data["cancel"] == [] and stripe.cancelled == [recent.id]


def test_a_row_a_send_worker_marks_sent_after_rollback_read_it_pending_is_cancelled_in_the_same_run(
    svc: Container,
) -> None:
    now = T + 40 * H
    svc.clock.set(now)  # type: ignore[attr-defined]
    raced = row(svc, "org-a", T + 38 * H, state="pending")
    status(svc, "cell-a", T + 39 * H, authority="cell", running=True)
    seam = svc.seam()
    read = seam.bucket_rows  # the rows as rollback reads them, and then the worker's mark lands

    def read_then_worker_marks(buckets: list[int]) -> list[OutboxRow]:
        rows = read(buckets)
        assert svc.store.transition(raced.id, "pending", "sent", now - 5, detail="sent")
        return rows

    seam.bucket_rows = read_then_worker_marks  # type: ignore[method-assign]
    stripe = CutoverStripeDouble()
    outcome = cutover_ops.rollback(svc, seam, stripe, T)
    assert [r["id"] for r in outcome.data["cancel"]] == [raced.id] and stripe.cancelled == [raced.id]
    assert outcome.data["demote"] == []
    assert svc.store.get_outbox_row(raced.id).state == "cancelled"  # type: ignore[union-attr]
