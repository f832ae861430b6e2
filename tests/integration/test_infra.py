"""infra/template.json is the one table definition: it lints, it merges into `chalice package`,
and the moto tables the tests use are built from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import fleet_model as fm
from chalicelib.adapters.dynamodb.tables import TEMPLATE, table_specs
from infra.capacity import infra_stack
from infra.merge import deep_merge, merge_template

ROOT = Path(__file__).resolve().parents[2]


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(path)], capture_output=True, text=True, check=False
    )


def test_infra_template_passes_cfn_lint() -> None:
    out = cfn_lint(TEMPLATE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packaged_template_is_deployable_and_lints(packaged: dict[str, Any]) -> None:
    out = cfn_lint(packaged["path"])
    assert out.returncode == 0, out.stdout + out.stderr
    resources = packaged["template"]["Resources"]
    types = {r["Type"] for r in resources.values()}
    assert {"AWS::Serverless::Function", "AWS::DynamoDB::Table", "AWS::S3::Bucket"} <= types
    schedules = [
        (name, event["Properties"].get("Schedule"))
        for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
        for event in (r["Properties"].get("Events") or {}).values() if event.get("Type") == "Schedule"
    ]
    assert sorted(s for _, s in schedules) == ["rate(1 minute)", "rate(5 minutes)"], schedules
    by_rate = {s: name.lower() for name, s in schedules}
    assert "rollup" in by_rate["rate(5 minutes)"] and "credits" in by_rate["rate(1 minute)"]
    assert fm.SCHEDULE_S == 300, "docs/capacity.md's model runs the coordinator as deployed"


def test_packaged_functions_carry_stage_flags_not_secrets(packaged: dict[str, Any]) -> None:
    fns = [r for r in packaged["template"]["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    for fn in fns:
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["WORKER_ENV"] == "prod" and env["SHADOW"] == "true"
        assert not {"EVENT_SECRET", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "SESSION_JWT_SECRET"} & set(env)


def test_table_specs_mirror_the_template() -> None:
    specs = {s["create"]["TableName"]: s for s in table_specs("p-dev")}
    assert set(specs) == {"p-dev-samples", "p-dev-orgs", "p-dev-outbox", "p-dev-control"}
    assert specs["p-dev-samples"]["ttl"] == {"AttributeName": "expires_at", "Enabled": True}
    assert all(s["pitr"] for s in specs.values())
    assert [g["IndexName"] for g in specs["p-dev-samples"]["create"]["GlobalSecondaryIndexes"]] == ["late"]


def test_moto_tables_are_the_template_tables(dynamodb: Any) -> None:
    described = dynamodb.describe_table(TableName="opensandbox-billing-test-outbox")["Table"]
    assert [k["AttributeName"] for k in described["KeySchema"]] == ["id"]
    assert described["GlobalSecondaryIndexes"][0]["IndexName"] == "queue"


def test_api_gateways_own_errors_are_json_with_error(packaged: dict[str, Any]) -> None:
    # The contract: every error is {"error": ...}, API Gateway's own answers too (unknown path 403,
    # throttling 429, 413, 504), not its default {"message": ...}.
    api = packaged["template"]["Resources"]["RestAPI"]
    assert api["Type"] == "AWS::Serverless::Api" and "DefinitionBody" in api["Properties"]  # still Chalice's
    responses = api["Properties"]["GatewayResponses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        template = response["ResponseTemplates"]["application/json"]
        # API Gateway puts the message in already quoted: render it as it would.
        rendered = template.replace("$context.error.messageString", json.dumps('Missing "Authentication" Token'))
        assert json.loads(rendered) == {"error": 'Missing "Authentication" Token'}


def test_the_merge_keeps_every_infra_resource_and_only_adds_to_chalices_api() -> None:
    infra = infra_stack("dev")  # infra/template.json in dev's capacity mode (tests/integration/test_table_capacity.py)
    rollup = json.loads((ROOT / "infra" / "rollup.json").read_text())["Resources"]
    send = json.loads((ROOT / "infra" / "send.json").read_text())["Resources"]
    merged = merge_template()
    # No Type: each deep-merges into Chalice's.
    chalices = {"RestAPI", "Rollup", "RollupWorker", "APIHandler", "SendWorker"}
    assert {k: v for k, v in merged["Resources"].items() if k not in chalices} == infra["Resources"] | {
        k: v for k, v in (rollup | send).items() if k not in chalices}
    assert merged["Resources"]["Rollup"]["Properties"]["Environment"]["Variables"] == {
        "ROLLUP_QUEUE_URL": {"Ref": "RollupTasksQueue"}, "SEND_QUEUE_URL": {"Ref": "SendTasksQueue"}}
    assert all("Type" not in merged["Resources"][k] for k in chalices)
    assert {k: v for k, v in merged.items() if k != "Resources"} == {k: v for k, v in infra.items() if k != "Resources"}
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}


def test_the_rollup_workers_queue_redrives_to_a_dead_letter_queue_with_alarms(packaged: dict[str, Any]) -> None:
    resources = packaged["template"]["Resources"]
    queue = resources["RollupTasksQueue"]["Properties"]
    worker = resources["RollupWorker"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RollupTasksDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"], "AWS's advice for a Lambda event source"
    event = worker["Events"]["RollupWorkerSqsEventSource"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["ScalingConfig"]["MaximumConcurrency"] >= 2
    # What docs/capacity.md's model takes as deployed: one task an invocation, its timeout, how many at once.
    assert (event["BatchSize"], worker["Timeout"], event["ScalingConfig"]["MaximumConcurrency"]) == (
        fm.WORKER_BATCH, fm.WORKER_TIMEOUT_S, fm.WORKER_CONCURRENCY) == (1, 300, 25)
    assert queue["VisibilityTimeout"] == 1800
    assert event["Queue"]["Fn::Sub"].endswith(":" + queue["QueueName"])
    alarms = {r["Properties"]["MetricName"]: r["Properties"] for r in resources.values()
              if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("Namespace") == "AWS/SQS"
              and "RollupTasks" in r["Properties"]["AlarmName"]["Fn::Sub"]}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["RollupTasksDeadLetterQueue", "QueueName"]}
    assert "ApproximateAgeOfOldestMessage" in alarms
    for fn in ("Rollup", "APIHandler"):
        env = resources[fn]["Properties"]["Environment"]["Variables"]
        assert env["ROLLUP_QUEUE_URL"] == {"Ref": "RollupTasksQueue"}


def test_the_send_workers_fifo_queue_redrives_to_a_dead_letter_queue_with_alarms(packaged: dict[str, Any]) -> None:
    resources = packaged["template"]["Resources"]
    queue = resources["SendTasksQueue"]["Properties"]
    dlq = resources["SendTasksDeadLetterQueue"]["Properties"]
    worker = resources["SendWorker"]["Properties"]
    assert queue["FifoQueue"] is True and dlq["FifoQueue"] is True, "a FIFO queue's dead-letter queue is FIFO too"
    assert queue["QueueName"].endswith(".fifo") and dlq["QueueName"].endswith(".fifo")
    # High-throughput FIFO: the quota applies per customer (message group), not per queue.
    assert (queue["DeduplicationScope"], queue["FifoThroughputLimit"]) == ("messageGroup", "perMessageGroupId")
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SendTasksDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"], "AWS's advice for a Lambda event source"
    event = worker["Events"]["SendWorkerSqsEventSource"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # FIFO takes batches of at most 10 and no batching window: Lambda's docs say the parameter is "not supported
    # for FIFO queues", so the mapping must not carry it; Chalice writes 0 for every queue, and SAM passes it on
    # to the event source mapping as it is. AWS::NoValue removes it there (the default is 0: no window anyway).
    assert event["BatchSize"] <= 10 and event["MaximumBatchingWindowInSeconds"] == {"Ref": "AWS::NoValue"}
    # Workers x customers served at once x 4 calls/s (250 ms a call) stays under Stripe's 1,000 calls/s.
    assert 2 <= event["ScalingConfig"]["MaximumConcurrency"] * 10 * 4 <= 1000
    assert event["Queue"]["Fn::Sub"].endswith(":" + queue["QueueName"])
    names = {r["Properties"]["AlarmName"]["Fn::Sub"].rsplit("-", 1)[1]: r["Properties"] for r in resources.values()
             if r["Type"] == "AWS::CloudWatch::Alarm" and "Fn::Sub" in r["Properties"]["AlarmName"]}
    assert names["SendTasksDeadLettered"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["SendTasksDeadLetterQueue", "QueueName"]}
    assert names["SendTasksOld"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert resources["Rollup"]["Properties"]["Environment"]["Variables"]["SEND_QUEUE_URL"] == {"Ref": "SendTasksQueue"}
