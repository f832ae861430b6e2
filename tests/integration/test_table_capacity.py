"""The tables' capacity mode (infra/capacity.py): on-demand by default, provisioned with auto scaling only
for the exact flag value, throttling alarms in both; checked on the packaged template of each mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from infra.capacity import ON_DEMAND, PROVISIONED, PROVISIONED_TABLES, stage_mode, tables
from infra.merge import deep_merge, merge_template
from tests.integration.test_infra import cfn_lint

ROOT = Path(__file__).resolve().parents[2]


def config(value: Any) -> str:
    stage: dict[str, Any] = {"environment_variables": {}}
    if value is not None:
        stage["table_capacity"] = value
    return json.dumps({"stages": {"prod": stage}})


@pytest.mark.parametrize("value", [None, "on-demand", "Provisioned", "PROVISIONED", "provisioned ", " provisioned",
                                   "true", "1", True, "", "provision"])
def test_any_value_but_the_exact_one_keeps_on_demand(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="infra.capacity"):
        assert stage_mode("prod", config(value)) == ON_DEMAND
    assert f"stage prod: {'tables on-demand' if value in (None, 'on-demand') else 'table_capacity='}" in caplog.text
    assert repr(value) in caplog.text  # the value as it was read, so a typo is visible in the log


def test_the_exact_value_switches_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="infra.capacity"):
        assert stage_mode("prod", config("provisioned")) == PROVISIONED
    assert "provisioned capacity with auto scaling" in caplog.text
    assert stage_mode("nope", config("provisioned")) == ON_DEMAND  # another stage's flag is not this one's


def test_the_shipped_stages_are_on_demand() -> None:
    stages = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]
    assert {name: stage_mode(name) for name in stages} == {name: ON_DEMAND for name in stages}


def throttle_metrics(resources: dict[str, Any]) -> set[tuple[str, ...]]:
    """(metric, table logical id, index or operation) for every metric the throttling alarms sum."""
    found = set()
    for r in resources.values():
        for query in r["Properties"].get("Metrics", []) if r["Type"] == "AWS::CloudWatch::Alarm" else []:
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                extra = dims.get("GlobalSecondaryIndexName") or dims.get("Operation") or ""
                found.add((metric["MetricName"], dims["TableName"]["Ref"], extra))
    return found


def every_throttle_metric(template: dict[str, Any]) -> set[tuple[str, ...]]:
    """Reads and writes throttled on every table and index, and the ingest's whole requests throttled."""
    want = {("ThrottledRequests", "SamplesTable", "BatchWriteItem")}
    for name, table in tables(template).items():
        for kind in ("Read", "Write"):
            want.add((f"{kind}ThrottleEvents", name, ""))
            want |= {(f"{kind}ThrottleEvents", name, g["IndexName"])
                     for g in table["Properties"].get("GlobalSecondaryIndexes", [])}
    return want


def test_on_demand_packaged_template(packaged: dict[str, Any]) -> None:
    # The packaged fixture is prod, whose config says on-demand.
    resources = packaged["template"]["Resources"]
    assert {r["Properties"]["BillingMode"] for r in tables(packaged["template"]).values()} == {"PAY_PER_REQUEST"}
    assert not [r for r in resources.values() if r["Type"].startswith("AWS::ApplicationAutoScaling")]
    assert every_throttle_metric(packaged["template"]) <= throttle_metrics(resources)


def test_provisioned_packaged_template_lints_and_scales_every_steady_table_and_index(
    packaged: dict[str, Any], tmp_path: Path
) -> None:
    # `chalice package --merge-template` deep-merges the merge template over Chalice's own; merging the
    # provisioned one over the packaged on-demand one is the same template (the infra part replaces it).
    template = deep_merge(packaged["template"], merge_template("prod", PROVISIONED))
    (tmp_path / "sam.json").write_text(json.dumps(template))
    out = cfn_lint(tmp_path / "sam.json")
    assert out.returncode == 0, out.stdout + out.stderr
    resources = template["Resources"]
    targets = {name: r["Properties"] for name, r in resources.items()
               if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"}
    policies = [r["Properties"] for r in resources.values()
                if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"]
    scaled = set()
    for name, table in tables(template).items():
        props = table["Properties"]
        steady = name in PROVISIONED_TABLES
        assert props["BillingMode"] == ("PROVISIONED" if steady else "PAY_PER_REQUEST"), name
        for kind in ("Read", "Write") if steady else ():
            assert props["ProvisionedThroughput"][f"{kind}CapacityUnits"]
            scaled.add(("table/${" + name + "}", f"dynamodb:table:{kind}CapacityUnits"))
            for gsi in props.get("GlobalSecondaryIndexes", []):
                assert gsi["ProvisionedThroughput"][f"{kind}CapacityUnits"]
                scaled.add(("table/${" + name + "}/index/" + gsi["IndexName"], f"dynamodb:index:{kind}CapacityUnits"))
    assert {(t["ResourceId"]["Fn::Sub"], t["ScalableDimension"]) for t in targets.values()} == scaled
    assert len(scaled) == 8  # samples + late, orgs + by_customer; reads and writes
    # One target-tracking policy per target, on the matching utilization metric.
    by_target = {p["ScalingTargetId"]["Ref"]: p for p in policies}
    assert set(by_target) == set(targets)
    for name, target in targets.items():
        config = by_target[name]["TargetTrackingScalingPolicyConfiguration"]
        kind = "Read" if "Read" in target["ScalableDimension"] else "Write"
        assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == f"DynamoDB{kind}CapacityUtilization"
        assert config["TargetValue"] == {"Ref": "CapacityTargetUtilization"}
    assert every_throttle_metric(template) <= throttle_metrics(resources)
