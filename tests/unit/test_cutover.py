"""The cutover's pure decisions: preflight checks, T, drain, the seam, rollback."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.core.cutover.checks import (
    EXIT_FAILED,
    EXIT_NOT_YET,
    EXIT_OK,
    Check,
    StageFlags,
    boundary_error,
    exit_code,
)
from chalicelib.core.cutover.drain import drain_checks
from chalicelib.core.cutover.plan import plan_flags, propose_t
from chalicelib.core.cutover.preflight import (
    REQUIRED_WEBHOOK_EVENTS,
    WebhookEndpoint,
    check_catalog,
    check_flags,
    check_parity,
    check_webhook,
    coverage_gaps,
    soak_window,
)
from chalicelib.core.cutover.rollback import ADJUST_WINDOW_SECONDS, plan_rollback
from chalicelib.core.cutover.verify import check_cells_stood_down, check_flowing, seam
from chalicelib.core.outbox import OutboxRow
from chalicelib.core.stage_config import read_stage, with_flags
from chalicelib.entrypoints.cli_cutover import plan_steps
from chalicelib.services.cutover_ops import flag_values
from chalicelib.services.webhook import HANDLED_TYPES

H = 3600
T = 1795564800 + 10 * H
NOW = T + 5 * H
ROOT = Path(__file__).resolve().parents[2]


def cell(cell_id: str = "c1", bt: int = T, authority: str = "edge", running: bool = False, pending: int = 0,
         reported: int = NOW) -> CellStatus:
    return CellStatus(cell_id, authority, running, bt, pending, 0, reported, reported)  # type: ignore[arg-type]


def row(org: str, b: int, state: str = "sent", sent_at: int | None = NOW - H, meter: str = "m") -> OutboxRow:
    return OutboxRow(f"{org}:{b}:{meter}", org, b, b + H, meter, Decimal("1.5"), "first", state,  # type: ignore[arg-type]
                     sent_at=sent_at if state in ("sent", "cancelled") else None)


def report(start: int, clean: bool = True, drift: str = "0.001") -> ParityReport:
    return ParityReport("c1", start, start + H, Decimal("0.02"),
                        (OrgParity("o", Decimal(10), Decimal(10), Decimal(drift)),), clean, start, start)


# --- preflight -----------------------------------------------------------------------------------

def test_required_webhook_events_are_the_ones_the_webhook_handles() -> None:
    assert set(REQUIRED_WEBHOOK_EVENTS) == set(HANDLED_TYPES)


def test_catalog_empty_or_incomplete_fails_naming_why() -> None:
    assert "empty" in check_catalog([], ["a"]).why
    partial = check_catalog(["a"], ["a", "overage"])
    assert not partial.ok and "overage" in partial.why
    assert check_catalog(["a", "overage"], ["a", "overage"]).ok


def test_webhook_must_be_one_endpoint_with_the_events() -> None:
    good = WebhookEndpoint("we_1", "https://x/api/webhooks/stripe", REQUIRED_WEBHOOK_EVENTS, "enabled")
    assert check_webhook([good]).ok
    assert check_webhook([good, WebhookEndpoint("we_0", "https://old", ("*",), "disabled")]).ok
    assert "no enabled" in check_webhook([]).why
    two = check_webhook([good, WebhookEndpoint("we_2", "https://y/webhooks/stripe", ("*",), "enabled")])
    assert not two.ok and "2 enabled" in two.why
    short = WebhookEndpoint("we_3", "https://x/api/webhooks/stripe", ("checkout.session.completed",), "enabled")
    assert "customer.subscription.deleted" in check_webhook([short]).why
    elsewhere = WebhookEndpoint("we_4", "https://x/hooks", ("*",), "enabled")
    assert "not the edge" in check_webhook([elsewhere]).why


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 10)), max_size=12), st.integers(0, 20),
       st.integers(1, 30))
def test_coverage_gaps_are_exactly_what_no_window_covers(raw: list[tuple[int, int]], start: int, length: int) -> None:
    windows = [(a, a + w) for a, w in raw]
    end = start + length
    gaps = coverage_gaps(windows, start, end)
    covered = {s for a, b in windows for s in range(a, b)}
    assert {s for a, b in gaps for s in range(a, b)} == set(range(start, end)) - covered


def test_parity_needs_24_clean_hours_from_every_cell() -> None:
    start, end = T - 24 * H, T
    full = [report(start + i * H) for i in range(24)]
    assert check_parity(["c1"], {"c1": full}, start, end)[0].ok
    holes = check_parity(["c1"], {"c1": full[:5] + full[6:]}, start, end)[0]
    assert not holes.ok and holes.wait and str(start + 5 * H) in holes.why
    dirty = check_parity(["c1"], {"c1": [*full[:-1], report(end - H, clean=False, drift="0.3")]}, start, end)[0]
    assert not dirty.ok and not dirty.wait and "not clean" in dirty.why and "0.3" in dirty.why
    assert "no cell" in check_parity([], {}, start, end)[0].why
    assert not check_parity(["c1", "c2"], {"c1": full}, start, end)[1].ok


def test_soak_window_ends_on_a_settled_boundary() -> None:
    start, end = soak_window(T + 1000, H, 600)
    assert (start, end) == (T - H - 24 * H, T - H)


ENV = {"SHADOW": "true", "BILL_FROM": "0", "BUCKET_SECONDS": "3600", "GRACE_SECONDS": "600"}


def flags_checked(flags: StageFlags, cells: list[CellStatus], running_shadow: bool | None) -> list[Check]:
    return check_flags(flags, flag_values(flags), cells, running_shadow)


def test_flags_consistent_and_each_inconsistency_named() -> None:
    cells = [cell(authority="cell", running=True)]
    assert flags_checked(StageFlags("dev", ENV), cells, True)[0].ok
    bad = flags_checked(StageFlags("dev", ENV | {"BILL_FROM": "1800"}), cells, None)[0]
    assert not bad.ok and "BILL_FROM" in bad.why
    clash = flags_checked(StageFlags("dev", ENV, {"rollup": {"SHADOW": "false"}}), cells, None)
    assert any("rollup overrides" in c.why for c in clash)
    live = flags_checked(StageFlags("dev", ENV | {"SHADOW": "false"}), cells, None)
    assert any("live already" in c.why for c in live)
    assert any("running app says" in c.why for c in flags_checked(StageFlags("dev", ENV), cells, False))
    stood_down = flags_checked(StageFlags("dev", ENV), [cell()], None)
    assert any("nobody bills it" in c.why for c in stood_down)


# --- plan and arm --------------------------------------------------------------------------------

@given(st.integers(10**6, 10**10), st.sampled_from([10, 60, 3600]), st.integers(0, 7200),
       st.dictionaries(st.integers(0, 48), st.integers(0, 100), max_size=10))
def test_proposed_t_is_a_boundary_ahead_with_the_least_load(now: int, bucket: int, lead: int,
                                                            loads: dict[int, int]) -> None:
    first = -(-(now + lead) // bucket) * bucket
    usage = {first - 86400 + (i - 1) * bucket: Decimal(v) for i, v in loads.items()}
    t = propose_t(now, bucket, lead, usage)
    assert t % bucket == 0 and t >= now + lead and boundary_error(t, bucket) is None

    def load(c: int) -> Decimal:
        return usage.get(c - 86400 - bucket, Decimal(0)) + usage.get(c - 86400, Decimal(0))

    candidates = range(first, first + max(bucket, min(86400, 48 * bucket)), bucket)
    assert load(t) == min(load(c) for c in candidates)


def test_boundary_error_names_the_bucket() -> None:
    assert boundary_error(T, H) is None
    assert "multiple of BUCKET_SECONDS=3600" in (boundary_error(T + 1800, H) or "")
    assert boundary_error(0, H)


def test_plan_lists_steps_and_flags_per_stage() -> None:
    body = plan_flags(StageFlags("prod", ENV), T, [StageFlags("dev", ENV | {"SHADOW": "false"})])
    assert body["flags"]["prod"]["after_arm"] == {"SHADOW": "false", "BILL_FROM": str(T), "BUCKET_SECONDS": "3600"}
    assert body["flags"]["dev"]["now"]["SHADOW"] == "false"
    assert any(f"arm --at {T} --stage prod" in s for s in plan_steps("prod", T))


def test_with_flags_changes_only_the_stage_flags_and_keeps_the_layout() -> None:
    text = (ROOT / ".chalice" / "config.json").read_text()
    new = with_flags(text, "prod", {"SHADOW": "false", "BILL_FROM": str(T)})
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 2 and all('"SHADOW"' in b or '"BILL_FROM"' in b for _, b in changed)
    assert read_stage(new, "prod").value("BILL_FROM") == str(T)
    assert read_stage(new, "dev").value("SHADOW") == "true"
    overridden = json.loads(text)
    overridden["stages"]["dev"]["lambda_functions"]["rollup"]["environment_variables"]["SHADOW"] = "true"
    flags = read_stage(with_flags(json.dumps(overridden), "dev", {"SHADOW": "false"}), "dev")
    assert flags.functions["rollup"]["SHADOW"] == "false"


# --- drain -----------------------------------------------------------------------------------------

def test_drain_check_each_state() -> None:
    ok = drain_checks([cell(authority="cell", running=True)], T, NOW, 1800)
    assert exit_code(ok) == EXIT_OK
    draining = drain_checks([cell(bt=T - H, authority="cell", running=True)], T, NOW, 1800)
    assert exit_code(draining) == EXIT_NOT_YET
    pending = drain_checks([cell(authority="cell", running=True, pending=4)], T, NOW, 1800)
    assert exit_code(pending) == EXIT_NOT_YET and "4 billable" in pending[0].why
    past = drain_checks([cell(bt=T + H, authority="cell", running=True)], T, NOW, 1800)
    assert exit_code(past) == EXIT_FAILED and "too early" in past[0].why
    stopped = drain_checks([cell(bt=T - H)], T, NOW, 1800)
    assert exit_code(stopped) == EXIT_FAILED and "nobody" in stopped[0].why
    stale = drain_checks([cell(reported=NOW - 4000)], T, NOW, 1800)
    assert exit_code(stale) == EXIT_FAILED and "too old" in stale[0].why
    assert exit_code(drain_checks([], T, NOW, 1800)) == EXIT_FAILED


# --- the seam --------------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=1, max_size=4))
def test_seam_is_clean_exactly_when_every_stopped_cell_billed_through_t(offsets: list[tuple[int, bool]]) -> None:
    cells = [cell(f"c{i}", T + k * H, running=run) for i, (k, run) in enumerate(offsets)]
    verdicts = seam(cells, T, H, [])
    both = any(v.verdict == "both" for v in verdicts)
    neither = any(v.verdict == "neither" for v in verdicts)
    assert both == any(k > 0 for k, _ in offsets)
    assert neither == any(k < 0 and not run for k, run in offsets)


def test_seam_counts_edge_events_sent_before_t_as_double() -> None:
    verdicts = seam([cell()], T, H, [row("o", T - H)])
    [v] = [v for v in verdicts if v.bucket_start == T - H]
    assert v.verdict == "both" and v.edge_events == 1


def test_flowing() -> None:
    sent = [row("o", T)]
    assert check_flowing(sent, T, H, 600, NOW).ok
    early = check_flowing([], T, H, 600, T + H)
    assert not early.ok and early.wait
    assert "no meter event" in check_flowing([], T, H, 600, NOW).why
    assert "still shadow" in check_flowing([*sent, row("o", T + H, "shadow")], T, H, 600, NOW).why
    stuck = check_flowing([*sent, row("p", T + H, "pending")], T, H, 600, NOW)
    assert not stuck.ok and "pending" in stuck.why


# --- rollback -----------------------------------------------------------------------------------

def test_rollback_cancels_inside_24h_lists_the_rest_and_demotes_pending() -> None:
    cells = [cell("c1", T + 3 * H, authority="cell", running=True)]
    rows = [
        row("a", T - H),  # before T: still billed by the cells, so a double
        row("a", T, sent_at=NOW - 2 * H),  # recent: cancel
        row("b", T + H, sent_at=NOW - 86400),  # received over 24 h ago: manual
        row("b", T + 2 * H, sent_at=NOW - 86400 + 300),  # inside 24 h but inside the safety margin: manual
        row("c", T + 2 * H, "pending"),  # never sent: back to shadow
        row("d", T + 3 * H),  # the cells did not bill it: the edge was right
        row("e", T + H, "cancelled"),  # a previous rollback did it
    ]
    plan = plan_rollback(rows, cells, NOW)
    assert [r.id for r in plan.cancel] == [f"a:{T - H}:m", f"a:{T}:m"]
    assert [r.id for r, _ in plan.manual] == [f"b:{T + H}:m", f"b:{T + 2 * H}:m"]
    assert "by hand" in plan.manual[0][1]
    assert [r.id for r in plan.demote] == [f"c:{T + 2 * H}:m"]


def test_rollback_with_cells_disagreeing_uses_where_the_usage_came_from() -> None:
    cells = [cell("c1", T + 2 * H), cell("c2", T)]
    rows = [row("a", T), row("b", T), row("c", T), row("d", T)]
    org_cells = {("a", T): frozenset({"c1"}), ("b", T): frozenset({"c2"}), ("c", T): frozenset({"c1", "c2"})}
    plan = plan_rollback(rows, cells, NOW, org_cells)
    assert [r.org_id for r in plan.cancel] == ["a"]
    assert [r.org_id for r, _ in plan.manual] == ["c", "d"]  # mixed, and unknown


@given(st.lists(st.integers(-2, 4), min_size=1, max_size=3),
       st.lists(st.tuples(st.integers(-2, 4), st.sampled_from(["sent", "pending", "cancelled"]),
                          st.integers(0, 2 * 86400)), max_size=12))
def test_rollback_touches_exactly_the_rows_every_cell_billed(cell_offsets: list[int],
                                                             raw: list[tuple[int, str, int]]) -> None:
    cells = [cell(f"c{i}", T + k * H, authority="cell", running=True) for i, k in enumerate(cell_offsets)]
    rows = [row(f"o{i}", T + k * H, state, sent_at=NOW - age) for i, (k, state, age) in enumerate(raw)]
    plan = plan_rollback(rows, cells, NOW)
    everyone = {r.id for r in rows if all(r.bucket_start < c.billed_through for c in cells)}
    nobody = {r.id for r in rows if all(r.bucket_start >= c.billed_through for c in cells)}
    touched = [r.id for r in plan.cancel] + [r.id for r, _ in plan.manual] + [r.id for r in plan.demote]
    assert len(touched) == len(set(touched)) and not set(touched) & nobody
    sent_everyone = {r.id for r in rows if r.id in everyone and r.state == "sent"}
    assert {r.id for r in plan.cancel} | {r.id for r, _ in plan.manual} >= sent_everyone
    assert all(NOW - (r.sent_at or 0) < ADJUST_WINDOW_SECONDS for r in plan.cancel)
    assert {r.id for r in plan.demote} == {r.id for r in rows if r.id in everyone and r.state == "pending"}


def test_verify_with_no_cell_reporting_fails_saying_so() -> None:
    """Found first by the fuzz (tests/fuzz), pinned by example."""
    assert check_cells_stood_down([], T) == [Check("cells", False, "no cell has reported its status")]
