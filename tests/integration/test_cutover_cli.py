"""`cutover preflight|plan|drain-check|arm|verify|rollback` through the CLI, on moto and the Stripe emulator."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.stripe_gateway import StripeClientGateway, StripeCutoverGateway
from chalicelib.bootstrap import Container
from chalicelib.core.catalog import CatalogEntry, price_specs
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.core.cutover.preflight import REQUIRED_WEBHOOK_EVENTS
from chalicelib.core.meter_events import MeterEvent, Outcome
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.stage_config import read_stage, with_flags
from chalicelib.ports import StoreRejected, StoreUnavailable
from tests.conftest import PREFIX, T0, written_once

H = 3600
ROOT = Path(__file__).resolve().parents[2]
METER = "sandbox_compute_sandbox_1gb"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of .chalice/config.json whose dev stage points at the test tables."""
    path = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", path)
    path.write_text(with_flags(path.read_text(), "dev", {"TABLE_PREFIX": PREFIX}))
    return path


@pytest.fixture
def sc(emulator: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url}, max_network_retries=0)


@pytest.fixture
def cut(svc: Container, sc: stripe.StripeClient) -> Container:
    svc.cutover_gateway = StripeCutoverGateway(sc)
    return svc


@pytest.fixture
def run(config: Path, run_cli: Callable[..., Any]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`cutover <args> --stage dev --json` with this test's container: (exit code, the JSON answer)."""

    def cutover(*args: str) -> tuple[int, dict[str, Any]]:
        out = run_cli(["cutover", *args, "--stage", "dev", "--config", str(config), "--json"])
        try:
            return out.exit_code, json.loads(out.stdout)
        except ValueError:
            return out.exit_code, {"output": out.output}

    return cutover


def failing(body: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["why"] for c in body["checks"] if not c["ok"]}


def status(svc: Container, cell_id: str, bt: int, authority: str = "cell", running: bool = True,
           pending: int = 0) -> None:
    now = svc.now()
    svc.cells().put_cell_status(CellStatus(cell_id, authority, running, bt, pending, 0, now, now))  # type: ignore[arg-type]


# --- preflight -----------------------------------------------------------------------------------

NOW = T0 + 30 * H
SOAK = (T0 + 4 * H, T0 + 28 * H)  # soak_window(NOW, 3600, 600)


@pytest.fixture
def ready(cut: Container, sc: stripe.StripeClient, clock: FixedClock) -> Container:
    """Everything preflight wants: catalog, one endpoint, two cells with 24 clean hours, shadow flags. The
    tables' part (50 conditional puts) is written through the ports once per worker and restored after."""
    clock.set(NOW)
    sc.v1.webhook_endpoints.create({"url": "https://edge.example/api/webhooks/stripe",
                                    "enabled_events": list(REQUIRED_WEBHOOK_EVENTS)})

    def write() -> None:
        entries = [CatalogEntry(s.catalog_key, f"price_{s.catalog_key}", s.lookup_key, s.meter)
                   for s in price_specs()]
        cut.accounts().publish_catalog(entries, NOW)
        for cell_id in ("cell-a", "cell-b"):
            status(cut, cell_id, SOAK[1])
            for h in range(SOAK[0], SOAK[1], H):
                parity(cut, cell_id, h)

    written_once("cutover-ready", write)
    return cut


def parity(svc: Container, cell_id: str, start: int, drift: str = "0.001", clean: bool = True) -> None:
    orgs = (OrgParity("org-a", Decimal(100), Decimal(100), Decimal(drift)),)
    svc.cells().put_parity_report(ParityReport(cell_id, start, start + H, Decimal("0.02"), orgs, clean,
                                               svc.now(), svc.now()))


def test_preflight_passes_when_everything_is_ready(ready: Container, config: Path, run: Callable[..., Any]) -> None:
    code, body = run("preflight")
    assert code == 0, body
    assert body["soak"] == {"from": SOAK[0], "to": SOAK[1]}
    assert {c["check"] for c in body["checks"]} == {"catalog", "webhook", "parity:cell-a", "parity:cell-b", "flags"}


def _empty_catalog(svc: Container, sc: Any, config: Path) -> None:
    accounts = svc.accounts()
    accounts.publish_catalog([e for e in accounts.catalog() if e.key != "overage"], svc.now())


def _second_endpoint(svc: Container, sc: Any, config: Path) -> None:
    sc.v1.webhook_endpoints.create({"url": "https://old.example/hook", "enabled_events": ["*"]})


def _endpoint_missing_event(svc: Container, sc: Any, config: Path) -> None:
    [endpoint] = sc.v1.webhook_endpoints.list().data
    sc.v1.webhook_endpoints.update(endpoint.id, {"enabled_events": ["checkout.session.completed"]})


def _hour_missing(svc: Container, sc: Any, config: Path) -> None:
    # The port has no delete (reports are only ever replaced by newer ones): remove it from the table.
    boto3.client("dynamodb", region_name="us-east-1").delete_item(
        TableName=f"{PREFIX}-control",
        Key={"pk": {"S": "parity#cell-b"}, "sk": {"S": f"{SOAK[0] + 5 * H:012d}#{SOAK[0] + 6 * H:012d}"}},
    )


def _drift(svc: Container, sc: Any, config: Path) -> None:
    parity(svc, "cell-a", SOAK[1] - 2 * H, drift="0.3", clean=False)


def _new_cell(svc: Container, sc: Any, config: Path) -> None:
    status(svc, "cell-c", SOAK[1])


def _live(svc: Container, sc: Any, config: Path) -> None:
    config.write_text(with_flags(config.read_text(), "dev", {"SHADOW": "false", "BILL_FROM": str(T0)}))


def _override(svc: Container, sc: Any, config: Path) -> None:
    data = json.loads(config.read_text())
    data["stages"]["dev"]["lambda_functions"]["rollup"]["environment_variables"]["BILL_FROM"] = "7200"
    config.write_text(json.dumps(data, indent=2) + "\n")


def _cell_stood_down(svc: Container, sc: Any, config: Path) -> None:
    status(svc, "cell-a", SOAK[1], authority="edge", running=False)


@pytest.mark.parametrize(
    "breaks, check, fragment, code",
    [
        (_empty_catalog, "catalog", "lacks overage", 1),
        (_second_endpoint, "webhook", "2 enabled webhook endpoints", 1),
        (_endpoint_missing_event, "webhook", "customer.subscription.created", 1),
        (_hour_missing, "parity:cell-b", f"first gap [{SOAK[0] + 5 * H}, {SOAK[0] + 6 * H})", 3),
        (_drift, "parity:cell-a", "not clean", 1),
        (_new_cell, "parity:cell-c", "no parity report", 3),
        (_live, "flags", "live already", 1),
        (_override, "flags", "rollup overrides", 1),
        (_cell_stood_down, "flags", "nobody bills it", 1),
    ],
)
def test_preflight_fails_naming_each_reason(ready: Container, sc: stripe.StripeClient, config: Path, breaks: Any,
                                            check: str, fragment: str, code: int, run: Callable[..., Any]) -> None:
    breaks(ready, sc, config)
    got, body = run("preflight")
    assert got == code, body
    assert fragment in failing(body)[check], failing(body)
    assert len(failing(body)) == 1


def test_preflight_with_no_catalog_no_endpoint_no_cells(cut: Container, config: Path, run: Callable[..., Any]) -> None:
    code, body = run("preflight")
    assert code == 1
    why = failing(body)
    assert "empty" in why["catalog"] and "no enabled" in why["webhook"] and "knows no cells" in why["parity"]


def test_wrong_stage_tables_are_refused(ready: Container, config: Path, run_cli: Callable[..., Any]) -> None:
    out = run_cli(["cutover", "preflight", "--stage", "prod", "--config", str(config)])
    assert out.exit_code == 2 and "opensandbox-billing-prod" in out.output


# --- plan, drain-check, arm ------------------------------------------------------------------------

def test_plan_proposes_the_next_quiet_boundary(cut: Container, config: Path, clock: FixedClock, run: Callable[...,
                                               Any]) -> None:
    clock.set(T0 + 26 * H + 120)
    code, body = run("plan")
    assert code == 0
    assert body["T"] % H == 0 and body["T"] >= clock.now() + H
    assert body["flags"]["dev"]["after_arm"]["BILL_FROM"] == str(body["T"])
    assert body["flags"]["prod"]["unchanged"] is True


def test_drain_check_exit_codes(cut: Container, config: Path, run: Callable[..., Any]) -> None:
    t = T0 + H
    status(cut, "cell-a", t)
    status(cut, "cell-b", t - H)
    assert run("drain-check", "--at", str(t))[0] == 3
    status(cut, "cell-b", t, pending=2)
    assert run("drain-check", "--at", str(t))[0] == 3
    status(cut, "cell-b", t)
    assert run("drain-check", "--at", str(t))[0] == 0
    assert run("drain-check", "--at", str(t - H))[0] == 1  # both cells already billed past it
    assert run("drain-check", "--at", str(t + 5))[0] == 2


def test_arm_refuses_t_off_a_bucket_boundary(cut: Container, config: Path, run_cli: Callable[..., Any]) -> None:
    before = config.read_text()
    out = run_cli(["cutover", "arm", "--at", str(T0 + 1800), "--stage", "dev",
                                   "--config", str(config)])
    assert out.exit_code == 2 and "not a positive multiple of BUCKET_SECONDS=3600" in out.output
    assert config.read_text() == before


def test_arm_writes_the_stage_flags_and_says_how_to_apply(cut: Container, config: Path, run: Callable[...,
                                                          Any]) -> None:
    before = config.read_text()
    code, body = run("arm", "--at", str(T0 + H))
    assert code == 0
    flags = read_stage(config.read_text(), "dev")
    assert flags.value("SHADOW") == "false" and flags.value("BILL_FROM") == str(T0 + H)
    assert read_stage(config.read_text(), "prod").value("SHADOW") == "true"
    assert sum(a != b for a, b in zip(before.splitlines(), config.read_text().splitlines(), strict=True)) == 2
    assert any("chalice deploy --stage dev" in c["why"] for c in body["checks"])


# --- verify -----------------------------------------------------------------------------------------

T = T0 + 10 * H


def sent(svc: Container, org: str, b: int, sent_at: int, meter: str = METER, state: str = "sent") -> OutboxRow:
    row = OutboxRow(f"{org}:{b}:{meter}", org, b, b + H, meter, Decimal("3.25"), "first", state,  # type: ignore[arg-type]
                    sent_at=sent_at if state != "pending" else None)
    assert svc.store.create_outbox_rows([row]) == 1
    return row


@pytest.fixture
def armed(cut: Container, config: Path, clock: FixedClock) -> Container:
    config.write_text(with_flags(config.read_text(), "dev", {"SHADOW": "false", "BILL_FROM": str(T)}))
    clock.set(T + 6 * H)
    for b in range(T, T + 5 * H, H):
        sent(cut, "org-a", b, b + H + 900)
    return cut


def test_verify_passes_on_a_clean_seam(armed: Container, config: Path, run: Callable[..., Any]) -> None:
    status(armed, "cell-a", T, authority="edge", running=False)
    status(armed, "cell-b", T, authority="edge", running=False)
    code, body = run("verify")
    assert code == 0, failing(body)
    verdicts = {b["bucket_start"]: b["verdict"] for b in body["buckets"]}
    assert verdicts[T - H] == "cell" and verdicts[T] == "edge"


def test_verify_catches_cells_not_drained(armed: Container, config: Path, run: Callable[..., Any]) -> None:
    status(armed, "cell-a", T, authority="edge", running=False)
    status(armed, "cell-b", T + 2 * H)  # still the authority, still billing
    code, body = run("verify")
    why = failing(body)
    assert code == 1 and "still bills" in why["cell:cell-b"] and "2 bucket(s) billed by both" in why["seam"]
    both = [b for b in body["buckets"] if b["verdict"] == "both"]
    assert [b["bucket_start"] for b in both] == [T, T + H] and all(b["edge_events"] == 1 for b in both)


def test_verify_catches_t_too_early(armed: Container, config: Path, run: Callable[..., Any]) -> None:
    status(armed, "cell-a", T + H, authority="edge", running=False)
    status(armed, "cell-b", T, authority="edge", running=False)
    code, body = run("verify")
    assert code == 1 and "1 bucket(s) billed by both" in failing(body)["seam"]
    assert [b["cells"] for b in body["buckets"] if b["verdict"] == "both"] == [["cell-a"]]


def test_verify_catches_buckets_billed_by_nobody(armed: Container, config: Path, run: Callable[..., Any]) -> None:
    status(armed, "cell-a", T - 2 * H, authority="edge", running=False)  # stopped two hours short of T
    status(armed, "cell-b", T, authority="edge", running=False)
    code, body = run("verify")
    assert code == 1 and "2 bucket(s) billed by nobody" in failing(body)["seam"]
    assert [b["bucket_start"] for b in body["buckets"] if b["verdict"] == "neither"] == [T - 2 * H, T - H]


def test_verify_before_the_first_live_bucket_says_retry(cut: Container, config: Path, clock: FixedClock,
                                                        run: Callable[..., Any]) -> None:
    config.write_text(with_flags(config.read_text(), "dev", {"SHADOW": "false", "BILL_FROM": str(T)}))
    clock.set(T + 1200)
    status(cut, "cell-a", T, authority="edge", running=False)
    code, body = run("verify")
    assert code == 3 and failing(body).keys() == {"flowing"}


# --- rollback ---------------------------------------------------------------------------------------

def test_rollback_cancels_exactly_the_events_stripe_still_allows(
    cut: Container, config: Path, clock: FixedClock, sc: stripe.StripeClient, emulator: Any,
    run: Callable[..., Any],
) -> None:
    now = T + 40 * H
    sc.v1.billing.meters.create({"display_name": METER, "event_name": METER,
                                 "default_aggregation": {"formula": "sum"}})
    gateway = StripeClientGateway(sc)

    def deliver(org: str, b: int, at: int, state: str = "sent", recorded: int | None = None) -> OutboxRow:
        emulator.state.fixed_now = at
        result = gateway.send_meter_event(MeterEvent(METER, f"{org}:{b}:{METER}", f"cus_{org}", "3.250000", b + H))
        assert result.outcome is Outcome.SENT
        return sent(cut, org, b, recorded or at, state=state)

    config.write_text(with_flags(config.read_text(), "dev", {"SHADOW": "false", "BILL_FROM": str(T)}))
    old = deliver("org-a", T, T + H + 900)  # received 38 h before the rollback: too late to cancel
    recent = deliver("org-a", T + 38 * H, now - H + 900)  # received 45 min ago: cancel
    skewed = deliver("org-b", T + 5 * H, now - 30 * H, recorded=now - H)  # we think recent; Stripe says not
    mine = deliver("org-a", T + 39 * H, now - 100)  # the cells have not billed this bucket: keep
    waiting = sent(cut, "org-c", T + 38 * H, 0, state="pending")  # never sent: must never be
    # The cells took billing back and re-billed everything before T + 39 h.
    clock.set(now)
    emulator.state.fixed_now = now
    status(cut, "cell-a", T + 39 * H)

    code, body = run("rollback")
    assert code == 1, body  # events are left for a manual credit
    assert [r["id"] for r in body["cancel"]] == [recent.id]
    assert sorted(r["id"] for r in body["manual_credit"]) == sorted([old.id, skewed.id])
    assert [r["id"] for r in body["demote"]] == [waiting.id]
    cancelled = {e.identifier for e in emulator.state.events.values() if e.cancelled}
    assert cancelled == {recent.id}
    assert emulator.state.events[mine.id].cancelled is False
    rows = {i: cut.store.get_outbox_row(i) for i in (recent.id, old.id, waiting.id, mine.id)}
    assert [rows[i].state for i in (recent.id, old.id, waiting.id, mine.id)] == [  # type: ignore[union-attr]
        "cancelled", "sent", "shadow", "sent"]
    assert read_stage(config.read_text(), "dev").value("SHADOW") == "true"

    again_code, again = run("rollback")  # safe to re-run: nothing is cancelled twice
    assert again_code == 1 and again["cancel"] == [] and len(again["manual_credit"]) == 2


def test_rollback_while_cells_are_still_stood_down_says_run_again(cut: Container, config: Path, run: Callable[...,
                                                                  Any]) -> None:
    status(cut, "cell-a", T, authority="edge", running=False)
    code, body = run("rollback", "--at", str(T))
    assert code == 3 and "run rollback again" in failing(body)["cells"]


def test_rollback_with_no_known_cell_fails_rather_than_pass_silently(cut: Container, config: Path, run: Callable[...,
                                                                     Any]) -> None:
    code, body = run("rollback", "--at", str(T))
    assert code == 1 and "no cell" in failing(body)["cells"]
    assert read_stage(config.read_text(), "dev").value("SHADOW") == "true"


def test_preflight_soak_in_seconds_for_short_buckets(ready: Container, config: Path,
                                                     run_cli: Callable[..., Any]) -> None:
    out = run_cli(["cutover", "preflight", "--stage", "dev", "--config", str(config), "--json",
                                   "--soak-seconds", str(2 * H)])
    assert out.exit_code == 0 and json.loads(out.stdout)["soak"] == {"from": SOAK[1] - 2 * H, "to": SOAK[1]}


# --- errors ------------------------------------------------------------------------------------------

class FailingCells:
    """A cell store whose every call fails with one error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any, **__: Any) -> Any:
            raise self.error

        return fail


@pytest.mark.parametrize("error", [StoreRejected("the write was refused"), StoreUnavailable("throttled")])
def test_a_store_error_is_one_line_and_exit_2_not_a_traceback(svc: Container, config: Path, error: Exception,
                                                              run_cli: Callable[..., Any]) -> None:
    """As the operator CLI answers it (tests/integration/test_cli.py); a rejected write was a traceback here."""
    svc.cell_store = FailingCells(error)  # type: ignore[assignment]
    result = run_cli(["cutover", "drain-check", "--at", str(T), "--stage", "dev", "--config",
                                      str(config)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {error}" in result.output and "Traceback" not in result.output
