"""What the alarms watch, computed from plain data; and every metric has its alarm."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from chalicelib.core import telemetry as tm
from chalicelib.core.cell_reports import OrgParity, ParityReport

ROOT = Path(__file__).resolve().parents[2]


def test_http_points_count_webhook_failures_conflicts_and_store_outages() -> None:
    def names(path: str, status: int) -> list[str]:
        return [p.name for p in tm.http_points(path, status)]

    assert names("/webhooks/stripe", 200) == []
    assert names("/webhooks/stripe", 500) == ["WebhookFailures"]
    assert names("/webhooks/stripe", 502) == ["WebhookFailures"]
    assert names("/webhooks/stripe", 503) == ["WebhookFailures", "StoreUnavailable"]
    assert names("/webhooks/stripe", 409) == ["ProvisioningConflicts"]
    assert names("/webhooks/stripe", 400) == ["WebhookRejected"]
    assert names("/ingest", 503) == ["StoreUnavailable"]
    assert names("/ingest", 400) == []


def test_an_unusable_event_is_counted_though_answered_200() -> None:
    unusable = {"received": True, "unusable": "created is not an integer"}
    assert [p.name for p in tm.http_points("/webhooks/stripe", 200, unusable)] == ["WebhookUnusable"]
    assert tm.http_points("/webhooks/stripe", 200, {"received": True}) == []
    assert tm.http_points("/webhooks/stripe", 200, "unusable") == []
    assert tm.http_points("/ingest", 200, unusable) == []


def test_skipped_run_says_nothing_and_shadow_run_no_send_metrics() -> None:
    assert tm.rollup_points({"skipped": "lease held"}) == []
    names = {p.name for p in tm.rollup_points({"roll": {}, "send": None})}
    assert "MeterEventsRejected" not in names and "StragglerSamples" in names


def test_outbox_age_and_parity_window() -> None:
    assert tm.outbox_age_point(None, 100).value == 0
    assert tm.outbox_age_point(40, 100).value == 60
    assert tm.expected_parity_window(10 * 3600 + 5) == (8 * 3600, 9 * 3600)


def test_parity_points_are_percent_per_cell_and_fleet_wide() -> None:
    orgs = (OrgParity("a", Decimal(1), Decimal(1), Decimal("-0.025")), OrgParity("b", Decimal(1), Decimal(1), None))
    points = tm.parity_points(ParityReport("c", 0, 3600, Decimal("0.02"), orgs, False, 0))
    drift = [p for p in points if p.name == "ParityDriftPercent"]
    assert [(p.value, dict(p.dimensions)) for p in drift] == [(2.5, {"cell_id": "c"}), (2.5, {})]
    assert [p.value for p in points if p.name == "ParityDriftingOrgs"] == [1, 1]


def test_missing_reports_per_cell_and_total() -> None:
    points = tm.missing_report_points({"a": True, "b": False})
    assert [(p.value, dict(p.dimensions)) for p in points] == [(0, {"cell_id": "a"}), (1, {"cell_id": "b"}), (1, {})]


def test_every_metric_has_an_alarm_on_its_fleet_wide_series() -> None:
    resources = json.loads((ROOT / "infra" / "template.json").read_text())["Resources"]
    alarmed = {r["Properties"]["MetricName"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"}
    emitted = {v for k, v in vars(tm).items() if k.isupper() and isinstance(v, str) and v[:1].isupper()}
    emitted -= {tm.NAMESPACE, "ParityDriftingOrgs", "StragglersWaiting", "UnbilledMemorySeconds"}
    assert emitted <= alarmed, emitted - alarmed
    for r in resources.values():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            assert [d["Name"] for d in r["Properties"]["Dimensions"]] == ["service", "environment"]
