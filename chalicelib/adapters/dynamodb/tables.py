"""Table definitions read from infra/template.json, the single source of truth.

The CLI (`tables create`) and the test fixtures build tables from the same
CloudFormation resources that a deployment creates, so they cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# infra/template.json, shipped as package data: template.json beside this module is a link to it in the
# checkout, and a copy of it in the wheel (pyproject.toml), so an installed CLI creates the same tables.
TEMPLATE = Path(__file__).with_name("template.json")


def _resolve_name(name: Any, stage_prefix: str) -> str:
    # Table names are "Fn::Sub" of "opensandbox-billing-${Stage}-<table>"; the stage prefix
    # (TABLE_PREFIX) replaces everything before the last "-".
    template = name["Fn::Sub"] if isinstance(name, dict) else name
    logical = template.rsplit("-", 1)[1]
    return f"{stage_prefix}-{logical}"


def table_specs(stage_prefix: str, template: Path = TEMPLATE) -> list[dict[str, Any]]:
    """create_table arguments (plus TTL and PITR settings) for every table in the template."""
    resources = json.loads(template.read_text())["Resources"]
    specs = []
    for resource in resources.values():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        create: dict[str, Any] = {
            "TableName": _resolve_name(props["TableName"], stage_prefix),
            "BillingMode": props["BillingMode"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "SSESpecification": {"Enabled": props.get("SSESpecification", {}).get("SSEEnabled", False)},
        }
        if "GlobalSecondaryIndexes" in props:
            create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        specs.append(
            {
                "create": create,
                "ttl": props.get("TimeToLiveSpecification"),
                "pitr": props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False),
            }
        )
    return specs


def create_tables(client: Any, stage_prefix: str) -> list[str]:
    """Create every table that does not exist yet; returns the names created."""
    existing = set(client.list_tables()["TableNames"])
    created = []
    for spec in table_specs(stage_prefix):
        name = spec["create"]["TableName"]
        if name in existing:
            continue
        client.create_table(**spec["create"])
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        if spec["ttl"]:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=spec["ttl"])
        if spec["pitr"]:
            client.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        created.append(name)
    return created
