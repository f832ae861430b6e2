"""Each packaged Lambda gets only the IAM actions and resources its code uses (issue 13, security).

`chalice package --stage prod` is run once per test run (the session fixture `packaged`), and
the roles in its output are compared with what the code calls: the boto3 operations are read from
the source (AST), so a new `client.scan(...)` without a policy change fails here, and a policy line
no code needs fails too.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGE_PREFIX = "opensandbox-billing-prod"
TABLES = {"samples", "orgs", "outbox", "control"}
SECRETS = ("EVENT_SECRET", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "SESSION_JWT_SECRET")

DYNAMODB_OPS = {"get_item", "put_item", "update_item", "delete_item", "batch_get_item", "batch_write_item", "query",
                "scan", "transact_write_items", "transact_get_items", "describe_table", "create_table",
                "list_tables", "update_time_to_live", "update_continuous_backups"}
S3_OPS = {"put_object": "s3:PutObject", "get_object": "s3:GetObject", "list_objects_v2": "s3:ListBucket",
          "delete_object": "s3:DeleteObject"}
# TransactWriteItems has no IAM action of its own: each action inside it is authorised as itself.
# The code's transactions put, update and condition-check (the straggler commit, provisioning).
TRANSACT_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}

# Code the Lambdas never run: the operator CLI (its own credentials) and the cutover's readers.
OPERATOR_MODULES = {"cli", "cli_cutover", "cutover_ops", "tables"}
OPERATOR_FUNCTIONS = {"S3Archive.batches", "DynamoSeam.bucket_rows", "DynamoSeam.org_cells"}


def camel(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


def lambda_sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        if path.stem not in OPERATOR_MODULES:
            yield path.stem, ast.parse(path.read_text(), str(path))


def nodes(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(qualified function name, node) for every node, so operator-only functions can be left out."""
    def walk(node: ast.AST, scope: str) -> Iterator[tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            inner = f"{scope}.{child.name}".lstrip(".") if isinstance(child, ast.ClassDef | ast.FunctionDef) else scope
            yield inner, child
            yield from walk(child, inner)
    yield from walk(tree, "")


def client_op(node: ast.AST) -> str | None:
    """The boto3 operation of `<...>client.<op>`, called or passed on (`helper(self.client.put_item, ...)`),
    and the operation a `client.get_paginator("op")` pages."""
    if not isinstance(node, ast.Attribute):
        return None
    target = node.value
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return node.attr if name.endswith("client") else None


def used_by_lambdas() -> tuple[set[str], set[str]]:
    """(IAM actions, DynamoDB index names) the Lambda code needs."""
    actions: set[str] = set()
    indexes: set[str] = set()
    for _module, tree in lambda_sources():
        for scope, node in nodes(tree):
            if scope in OPERATOR_FUNCTIONS:
                continue
            if isinstance(node, ast.Call):
                # Index names wherever a request is built (helpers like `_query(**request)` included).
                indexes |= {str(k.value.value) for k in node.keywords
                            if k.arg == "IndexName" and isinstance(k.value, ast.Constant)}
                if client_op(node.func) == "get_paginator" and isinstance(node.args[0], ast.Constant):
                    actions |= iam_actions(str(node.args[0].value))
            op = client_op(node)
            if op:
                actions |= iam_actions(op)
    return actions, indexes


def iam_actions(op: str) -> set[str]:
    if op == "transact_write_items":
        return TRANSACT_ACTIONS
    if op in DYNAMODB_OPS:
        return {"dynamodb:" + camel(op)}
    return {S3_OPS[op]} if op in S3_OPS else set()


def roles(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Function logical id -> the statements of its role."""
    resources = template["Resources"]
    out = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        role = res["Properties"]["Role"]["Fn::GetAtt"][0]
        out[name] = [s for p in resources[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return out


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def granted(statements: list[dict[str, Any]], service: str) -> tuple[set[str], set[str]]:
    actions: set[str] = set()
    resources: set[str] = set()
    for s in statements:
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
        mine = {a for a in listed(s["Action"]) if a.startswith(service + ":")}
        if mine:
            actions |= mine
            resources |= set(listed(s["Resource"]))
    return actions, resources


@pytest.fixture(scope="module")
def functions(packaged: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    fns = roles(packaged["template"])
    assert set(fns) == {"APIHandler", "Rollup", "Credits", "RollupWorker", "SendWorker"}, fns
    return fns


def test_the_source_scan_finds_what_the_code_is_known_to_call() -> None:
    # Guards the scanner itself: if it went blind, the equality checks below would pass on nothing.
    actions, indexes = used_by_lambdas()
    assert {"dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem", "s3:PutObject"} <= actions
    assert "s3:GetObject" not in actions and "dynamodb:CreateTable" not in actions  # operator-only code is out
    assert {"late", "queue"} <= indexes


def test_no_wildcards_and_every_table_named(functions: dict[str, list[dict[str, Any]]]) -> None:
    for name, statements in functions.items():
        for s in statements:
            for action in listed(s["Action"]):
                assert "*" not in action, (name, action)
            for resource in listed(s["Resource"]):
                assert resource != "*", (name, s)
        _, tables = granted(statements, "dynamodb")
        pattern = re.compile(rf"arn:aws:dynamodb:\*:\*:table/{STAGE_PREFIX}-([a-z]+)(/index/([a-z_]+))?")
        for arn in tables:
            m = pattern.fullmatch(arn)
            assert m and m.group(1) in TABLES, (name, arn)  # a table by its name: no `table/prefix-*`
        _, buckets = granted(statements, "s3")
        assert all(b.startswith(f"arn:aws:s3:::{STAGE_PREFIX}-raw/raw/") for b in buckets), buckets


def test_dynamodb_actions_are_exactly_what_the_code_calls(functions: dict[str, list[dict[str, Any]]]) -> None:
    needed, indexes = used_by_lambdas()
    needed_ddb = {a for a in needed if a.startswith("dynamodb:")}
    for name, statements in functions.items():
        actions, resources = granted(statements, "dynamodb")
        assert actions == needed_ddb, (name, actions ^ needed_ddb)
        granted_indexes = {r.rsplit("/", 1)[1] for r in resources if "/index/" in r}
        # The API handler answers the webhook (orgs by customer); the rollup reads the late and queue indexes;
        # the rollup's workers read shards and partials by their keys, the send's workers rows by id: no index.
        assert granted_indexes <= indexes, (name, granted_indexes - indexes)
        assert {"late", "queue"} <= granted_indexes or (name in ("RollupWorker", "SendWorker")
                                                          and not granted_indexes), name
        assert {r for r in resources if "/index/" not in r} == {
            f"arn:aws:dynamodb:*:*:table/{STAGE_PREFIX}-{t}" for t in TABLES}


def test_only_the_api_writes_the_archive_and_each_reads_only_its_secrets(
    functions: dict[str, list[dict[str, Any]]],
) -> None:
    api_s3, _ = granted(functions["APIHandler"], "s3")
    rollup_s3, _ = granted(functions["Rollup"], "s3")
    credits_s3, _ = granted(functions["Credits"], "s3")
    assert api_s3 == {"s3:PutObject"} and rollup_s3 == set() == credits_s3
    # The free tier's round signs its halt pushes to the cells: the event secret, nothing else.
    for name, expected in (("APIHandler", SECRETS), ("Rollup", ("STRIPE_API_KEY",)), ("Credits", ("EVENT_SECRET",)),
                           ("SendWorker", ("STRIPE_API_KEY",))):
        actions, params = granted(functions[name], "ssm")
        assert actions == {"ssm:GetParameter"}
        assert params == {f"arn:aws:ssm:*:*:parameter/opensandbox-billing/prod/{s}" for s in expected}, name
    worker_ssm, _ = granted(functions["RollupWorker"], "ssm")
    worker_s3, _ = granted(functions["RollupWorker"], "s3")
    assert worker_ssm == set() and worker_s3 == set(), "the workers read and write the tables only"
    for name, statements in functions.items():
        services = {a.split(":")[0] for s in statements for a in listed(s["Action"])}
        assert services <= {"logs", "dynamodb", "s3", "ssm", "sqs"}, (name, services)


def test_the_rollup_tasks_queue_is_sent_to_by_the_coordinator_and_parity_and_read_by_the_workers(
    functions: dict[str, list[dict[str, Any]]],
) -> None:
    queue = {"arn:aws:sqs:*:*:edge-billing-rollup-tasks"}
    send = {"arn:aws:sqs:*:*:edge-billing-send-tasks.fifo"}
    assert granted(functions["APIHandler"], "sqs") == ({"sqs:SendMessage"}, queue)
    assert granted(functions["Rollup"], "sqs") == ({"sqs:SendMessage"}, queue | send), "the send's coordinator too"
    assert granted(functions["RollupWorker"], "sqs") == (
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}, queue)
    assert granted(functions["SendWorker"], "sqs") == (
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}, send)


def test_config_json_holds_no_secret() -> None:
    text = (ROOT / ".chalice" / "config.json").read_text()
    config = json.loads(text)
    for stage, body in config["stages"].items():
        envs = [body.get("environment_variables", {})] + [
            fn.get("environment_variables", {}) for fn in body.get("lambda_functions", {}).values()]
        for env in envs:
            assert not set(SECRETS) & set(env), stage
            for key, value in env.items():
                # Stripe keys and webhook secrets by their prefixes; long random-looking strings by shape.
                assert not re.match(r"(sk|rk|pk)_(test|live)_|whsec_", value), (stage, key)
                assert not re.fullmatch(r"[A-Za-z0-9+/=_-]{32,}", value), (stage, key)
