"""The capacity accountant applies DynamoDB's sizing rules; the benches' counting figures hold."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from bench.capacity import Accountant, item_size, read_units, value_size, write_units
from bench.harness import Workload
from bench.ingest import cost
from chalicelib.adapters.dynamodb.tables import create_tables, table_specs


def test_sizes_follow_dynamodbs_rules() -> None:
    assert value_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert value_size({"N": "123456"}) == 4  # ~1 byte per two digits + 1
    assert value_size({"BOOL": True}) == 1
    assert item_size({"pk": {"S": "abc"}, "n": {"N": "1"}}) == 2 + 3 + 1 + 2


@pytest.mark.parametrize("size, wu", [(1, 1), (1024, 1), (1025, 2), (4096, 4)])
def test_write_units_per_started_kb(size: int, wu: int) -> None:
    assert write_units(size) == wu


def test_read_units_per_started_4kb_halved_when_eventually_consistent() -> None:
    assert read_units(100, consistent=True) == 1
    assert read_units(100, consistent=False) == 0.5
    assert read_units(4097, consistent=True) == 2


def test_hooked_client_counts_puts_gsi_copies_and_transactions(aws: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_tables(client, "acct")
    accountant = Accountant.for_tables(table_specs("acct"))
    accountant.attach(client)
    small = {"id": {"S": "row-1"}, "state": {"S": "sent"}}
    client.put_item(TableName="acct-outbox", Item=small)
    assert accountant.wu == 1
    queued: dict[str, Any] = small | {"id": {"S": "row-2"}, "queue": {"S": "pending"}, "bucket_start": {"N": "1"}}
    client.put_item(TableName="acct-outbox", Item=queued)
    assert accountant.wu == 1 + 3, "an item in the `queue` and `by_bucket` GSIs costs a write in each"
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": "acct-outbox", "Item": small | {"id": {"S": "row-3"}}}}]
    )
    assert accountant.wu == 4 + 2, "transactions cost double"
    client.get_item(TableName="acct-outbox", Key={"id": {"S": "row-1"}})
    assert accountant.ru == 0.5 and accountant.requests["GetItem"] == 1


def test_ingest_meets_its_write_and_request_targets_on_a_small_fleet() -> None:
    # Counting figures are deterministic (unlike CPU time), so the bench's targets can be asserted here.
    work = Workload(orgs=6, sandboxes_per_org=2, period=20, hours=1.25)
    edge = cost(work, batch=200, design="edge")
    assert edge["wu_per_tick"] <= 1.02
    assert edge["requests_per_batch_max"] <= edge["request_budget"]
    # One put per tick: its requests per batch do not depend on the fleet's length, so a short one shows it.
    naive = cost(Workload(orgs=6, sandboxes_per_org=2, period=20, hours=0.3), batch=200, design="naive")
    assert naive["requests_per_batch_max"] > edge["requests_per_batch_max"] * 5
