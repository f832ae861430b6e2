"""`make run`'s cutover, shorter: real processes, two cell-kit cells, the operator CLI, the seam checked to zero."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
# `make test-e2e` runs these one at a time, unloaded: they share .local/ and the local stage of .chalice/config.json.
def test_a_whole_cutover_bills_every_org_exactly_its_ground_truth(tmp_path: Path) -> None:
    config_before = (ROOT / ".chalice" / "config.json").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "sim.cutover", "--soak-buckets", "3", "--live-buckets", "4", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert (ROOT / ".chalice" / "config.json").read_text() == config_before, "arm's edit is undone"
    assert not (ROOT / ".local" / "stack.json").exists(), "the stack is torn down afterwards"
    report = json.loads((tmp_path / "cutover-report.json").read_text())
    assert (tmp_path / "cutover-chart.png").stat().st_size > 10_000
    # The operator's page, seen in Chromium during the run, beside the report (axe clean, fits a phone).
    assert (tmp_path / "status-page.png").stat().st_size > 10_000
    page = json.loads((tmp_path / "status-page.json").read_text())
    assert page["status"] == 200 and page["axe_violations"] == [] and page["page_width"] <= 390

    # The seed's sequence, as the operator ran it: preflight failed first (the soak too short), then passed.
    codes = [(c["command"].split()[1], c["exit_code"]) for c in report["cutover_cli"]]
    preflights = [code for name, code in codes if name == "preflight"]
    assert preflights[0] != 0 and preflights[-1] == 0
    assert "no parity report" in report["cutover_cli"][0]["failing"][0]
    assert ("drain-check", 0) in codes and ("arm", 0) in codes and codes[-1] == ("verify", 0)

    t = report["T"]
    lines = report["per_org_meter"]
    assert {line["org_id"] for line in lines} >= {"acme", "globex", "initech", "umbrella", "stark", "wayne",
                                                  "soylent"}
    for line in lines:
        assert Decimal(line["difference"]) == 0 and Decimal(line["wrong_side"]) == 0, line
        assert Decimal(line["cells_before_t"]) + Decimal(line["edge_from_t"]) == Decimal(line["stripe"]), line
    # Both sides billed: the cells before T, the edge from T; every bucket by exactly one side.
    assert sum(Decimal(x["cells_before_t"]) for x in lines) > 0 and sum(Decimal(x["edge_from_t"]) for x in lines) > 0
    for bucket in report["per_bucket"]:
        sides = {"edge" if s == "edge" else "cell" for s in bucket["billed_by"]}
        assert sides <= ({"edge"} if bucket["bucket_start"] >= t else {"cell"}), bucket
    assert report["costs"]["meter_events"]["edge_late_deltas"] > 0, "the cut-off cell's backlog was billed late"
    refused = report["events"]["refused_creates"]
    assert [r["status"] for r in refused if r["org_id"] == "acme"] == [401], "no cap-token, no create"
    # The free org ran out of credits in both cells, was halted (a create refused), upgraded and resumed;
    # nothing of it reached Stripe before it was pro.
    free = report["events"]["free_tier"]
    assert sorted(free["halted_in_cells_us"]) == sorted(free["resumed_in_cells_us"]) == ["cell-a", "cell-b"]
    assert free["refused_create"]["status"] in (401, 403) and free["upgraded_at"] is not None
    balances = [Decimal(str(b["balance_cents"])) for b in free["balance_trail"] if b["plan"] == "free"]
    assert balances[0] > 0 and balances[-1] == 0 and balances == sorted(balances, reverse=True)
    assert free["stripe_events_before_pro"] == 0 and free["stripe_events_after_pro"] > 0
    # Parity: clean through the soak; the cut-off cell's reports drifted while its ticks were held, and its
    # re-checks after the backlog arrived are clean again.
    drift = report["parity_drift"]
    assert all(Decimal(d["drift"]) == 0 for d in drift if d["window_from"] < t)
    assert any(Decimal(d["drift"]) < 0 for d in drift if d["cell_id"] == "cell-b" and not d["rechecked"])
    rechecked = [d for d in drift if d["rechecked"]]
    assert rechecked and all(Decimal(d["drift"]) == 0 for d in rechecked)
