"""The tables' capacity mode, per stage: on-demand (the default) or provisioned with auto scaling.

A stage opts in with `"table_capacity": "provisioned"` in its block of .chalice/config.json (Chalice
ignores keys it does not know). Only that exact value switches: anything else, a typo or a different case
included, keeps the tables on-demand and says so on stderr, because a half-applied capacity plan
throttles billing while on-demand only costs more (docs/capacity.md has both bills).

Provisioned mode puts the tables with a steady load on provisioned capacity: samples (one write per
tick, ~98 % of the units) and orgs (a lookup per ingest batch). Each of them and each of their global
secondary indexes gets a provisioned throughput, an Application Auto Scaling scalable target per read and
write dimension and a target-tracking policy on each (no role named: Application Auto Scaling uses its
service-linked role for DynamoDB). Outbox and control stay on-demand in both modes: their writes come
in bursts when a bucket closes (the shards' partials, the outbox rows), which auto scaling (minutes to
scale out, slower to scale in) cannot follow, and they are ~2 % of the units (docs/capacity.md).

Both modes get the throttling alarms: an on-demand table throttles too, at a partition's 1,000 WCU/s or
3,000 RCU/s or at the table's quota (docs/capacity.md, "what breaks first").
Usage: python -m infra.capacity --stage STAGE OUT   (the infra stack alone, as docs/deploy.md deploys it)
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parent
CONFIG = INFRA.parent / ".chalice" / "config.json"
FLAG = "table_capacity"
PROVISIONED = "provisioned"
ON_DEMAND = "on-demand"

log = logging.getLogger("infra.capacity")

# The samples table scales with the fleet: its bounds are the stack's parameters (docs/capacity.md sizes
# them: at 30,000 ticks/s it takes ~30,600 WCU/s of writes and a read floor for the rollup's workers).
# The orgs table and every index take small fixed bounds: they carry per-org items and stragglers.
SAMPLES = "SamplesTable"
PROVISIONED_TABLES = (SAMPLES, "OrgsTable")
PARAMETERS: dict[str, dict[str, Any]] = {
    "SamplesReadCapacityMin": {"Default": 100, "Description": "Floor of the samples table's read capacity "
                               "(provisioned mode): the rollup workers read a closed bucket in a burst."},
    "SamplesReadCapacityMax": {"Default": 40000, "Description": "Ceiling of the samples table's read capacity "
                               "(40,000: the default per-table quota)."},
    "SamplesWriteCapacityMin": {"Default": 100, "Description": "Floor of the samples table's write capacity "
                                "(provisioned mode)."},
    "SamplesWriteCapacityMax": {"Default": 40000, "Description": "Ceiling of the samples table's write capacity "
                                "(40,000: the default per-table quota; ~1.02 per tick/s)."},
    "CapacityTargetUtilization": {"Default": 70, "MinValue": 20, "MaxValue": 90, "Description": "Percent of "
                                  "provisioned capacity auto scaling aims to use (provisioned mode)."},
}
SMALL_BOUNDS = (5, 4000)  # (min, max) units for the orgs table and for every index
# Throttled events per minute, in 3 of 5 minutes: a short throttle while auto scaling catches up is
# retried by the SDK and the callers; a sustained one stalls ingest (503) or the rollup's workers.
THROTTLE_THRESHOLD = 10
# The operations the code sends to each table, for ThrottledRequests (its dimensions are table and
# operation): the ingest's BatchWriteItem is the one whose throttling answers 503 to the cells.
OPERATIONS = {
    "SamplesTable": ("BatchWriteItem", "Query", "PutItem"),
    "OrgsTable": ("BatchGetItem", "GetItem", "UpdateItem", "PutItem"),
    "OutboxTable": ("BatchWriteItem", "Query", "UpdateItem", "TransactWriteItems"),
    "ControlTable": ("GetItem", "PutItem", "UpdateItem", "Query", "TransactWriteItems"),
}


def stage_mode(stage: str, config_text: str | None = None) -> str:
    """The stage's capacity mode: provisioned only for the exact value, else on-demand (said on stderr)."""
    config = json.loads(CONFIG.read_text() if config_text is None else config_text)
    value = (config.get("stages") or {}).get(stage, {}).get(FLAG, config.get(FLAG))
    if value == PROVISIONED:
        log.info("stage %s: tables on provisioned capacity with auto scaling (%s=%r)", stage, FLAG, value)
        return PROVISIONED
    if value not in (None, ON_DEMAND):
        log.warning("stage %s: %s=%r is not %r: tables stay on-demand", stage, FLAG, value, PROVISIONED)
    else:
        log.info("stage %s: tables on-demand (%s=%r)", stage, FLAG, value)
    return ON_DEMAND


def tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}


def _alarm(name: str, description: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """A sum of throttle metrics (metric math), per minute, 3 of 5 minutes over the threshold."""
    queries = [{"Id": f"m{i}", "ReturnData": False, "MetricStat": {"Metric": {"Namespace": "AWS/DynamoDB", **m},
                                                                   "Period": 60, "Stat": "Sum"}}
               for i, m in enumerate(metrics)]
    total = {"Id": "throttled", "Label": "throttled", "ReturnData": True,
             "Expression": "SUM([" + ",".join(f"m{i}" for i in range(len(queries))) + "])"}
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Sub": "${NamePrefix}-${Stage}-" + name},
        "AlarmDescription": description + f": runbook '{name}'.",
        "Metrics": [*queries, total],
        "EvaluationPeriods": 5, "DatapointsToAlarm": 3, "Threshold": THROTTLE_THRESHOLD,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": "AlarmTopic"}], "OKActions": [{"Ref": "AlarmTopic"}]}}


def throttle_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per table: reads and writes throttled on the table and its indexes (Read/WriteThrottleEvents), and
    requests throttled whole (ThrottledRequests, by operation)."""
    out = {}
    for name, table in tables(template).items():
        short = name.removesuffix("Table")
        dims = [{"Name": "TableName", "Value": {"Ref": name}}]
        indexes = [g["IndexName"] for g in table["Properties"].get("GlobalSecondaryIndexes", [])]
        for kind in ("Read", "Write"):
            metrics = [{"MetricName": f"{kind}ThrottleEvents", "Dimensions": dims}]
            metrics += [{"MetricName": f"{kind}ThrottleEvents",
                         "Dimensions": [*dims, {"Name": "GlobalSecondaryIndexName", "Value": i}]} for i in indexes]
            what = f"The {short.lower()} table or its indexes throttle {kind.lower()}s"
            out[f"{short}{kind}ThrottledAlarm"] = _alarm(f"{short}{kind}Throttled", what, metrics)
        requests = [{"MetricName": "ThrottledRequests", "Dimensions": [*dims, {"Name": "Operation", "Value": op}]}
                    for op in OPERATIONS[name]]
        out[f"{short}RequestsThrottledAlarm"] = _alarm(
            f"{short}RequestsThrottled", f"Whole requests to the {short.lower()} table are throttled", requests)
    return out


def _bounds(table: str, kind: str) -> tuple[Any, Any]:
    if table == SAMPLES:
        return {"Ref": f"Samples{kind}CapacityMin"}, {"Ref": f"Samples{kind}CapacityMax"}
    return SMALL_BOUNDS


def _scaling(logical: str, table: str, index: str | None, kind: str) -> dict[str, dict[str, Any]]:
    """A scalable target and its target-tracking policy, for one table's or index's reads or writes."""
    low, high = _bounds(table, kind) if index is None else SMALL_BOUNDS
    resource = "table/${" + table + "}" + (f"/index/{index}" if index else "")
    dimension = f"dynamodb:{'index' if index else 'table'}:{kind}CapacityUnits"
    target = {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
        "ServiceNamespace": "dynamodb", "ResourceId": {"Fn::Sub": resource}, "ScalableDimension": dimension,
        "MinCapacity": low, "MaxCapacity": high}}
    policy = {"Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
        "PolicyName": {"Fn::Sub": "${NamePrefix}-${Stage}-" + logical},
        "PolicyType": "TargetTrackingScaling", "ScalingTargetId": {"Ref": f"{logical}Target"},
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": {"Ref": "CapacityTargetUtilization"},
            "PredefinedMetricSpecification": {"PredefinedMetricType": f"DynamoDB{kind}CapacityUtilization"}}}}
    return {f"{logical}Target": target, f"{logical}Policy": policy}


def provisioned(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the steady tables and their indexes on provisioned capacity, auto scaled."""
    out = copy.deepcopy(template)
    out.setdefault("Parameters", {}).update(
        {name: {"Type": "Number", "MinValue": 1, **spec} for name, spec in PARAMETERS.items()})
    scaling: dict[str, dict[str, Any]] = {}
    for name in PROVISIONED_TABLES:
        props = out["Resources"][name]["Properties"]
        props["BillingMode"] = "PROVISIONED"
        # The floor to start from; auto scaling moves it (a stack update that leaves it unchanged keeps the
        # scaled value: CloudFormation only writes properties that changed).
        props["ProvisionedThroughput"] = {
            "ReadCapacityUnits": _bounds(name, "Read")[0], "WriteCapacityUnits": _bounds(name, "Write")[0]}
        for kind in ("Read", "Write"):
            scaling |= _scaling(f"{name.removesuffix('Table')}{kind}", name, None, kind)
        for gsi in props.get("GlobalSecondaryIndexes", []):
            gsi["ProvisionedThroughput"] = {"ReadCapacityUnits": SMALL_BOUNDS[0], "WriteCapacityUnits": SMALL_BOUNDS[0]}
            for kind in ("Read", "Write"):
                logical = f"{name.removesuffix('Table')}{gsi['IndexName'].title().replace('_', '')}{kind}"
                scaling |= _scaling(logical, name, gsi["IndexName"], kind)
    out["Resources"] |= scaling
    return out


def with_capacity(template: dict[str, Any], mode: str) -> dict[str, Any]:
    """infra/template.json in the given mode, with the throttling alarms (both modes)."""
    out = provisioned(template) if mode == PROVISIONED else copy.deepcopy(template)
    out["Resources"] |= throttle_alarms(out)
    return out


def infra_stack(stage: str, mode: str | None = None) -> dict[str, Any]:
    """The infra stack of `stage`, in its configured mode unless `mode` is given."""
    return with_capacity(json.loads((INFRA / "template.json").read_text()), mode or stage_mode(stage))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    if len(argv) != 3 or argv[0] != "--stage":
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    Path(argv[2]).write_text(json.dumps(infra_stack(argv[1]), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
