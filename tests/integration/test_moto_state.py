"""The fixtures empty (or restore) moto's tables and bucket in place, not through the API: check that what the
API sees afterwards is empty (or as it was), indexes included, on the moto version installed (an upgrade that
moved moto's items elsewhere fails here, not as leftovers leaking between tests)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.adapters.dynamodb.tables import create_tables, table_specs
from tests import moto_patches
from tests.conftest import ARCHIVE, BOTO, PREFIX, empty_bucket, empty_tables, written_once


def item(spec: dict[str, Any], n: int) -> dict[str, dict[str, str]]:
    # Every key attribute, the indexes' too, so the item shows in every index.
    return {a["AttributeName"]: {a["AttributeType"]: f"{a['AttributeName']}-{n}" if a["AttributeType"] == "S"
                                 else str(n)} for a in spec["AttributeDefinitions"]}


def index_query(client: Any, spec: dict[str, Any], index: dict[str, Any]) -> int:
    key = next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "HASH")
    value = item(spec, 0)[key]
    return int(client.query(TableName=spec["TableName"], IndexName=index["IndexName"],
                            KeyConditionExpression="#k = :v", ExpressionAttributeNames={"#k": key},
                            ExpressionAttributeValues={":v": value})["Count"])


def test_emptied_in_place_means_empty_through_the_api(dynamodb: Any, s3: Any) -> None:
    specs = [spec["create"] for spec in table_specs(PREFIX)]
    for spec in specs:
        for n in range(3):
            dynamodb.put_item(TableName=spec["TableName"], Item=item(spec, n))
        assert dynamodb.scan(TableName=spec["TableName"])["Count"] == 3
        for index in spec.get("GlobalSecondaryIndexes", []):
            assert index_query(dynamodb, spec, index) == 1
    s3.put_object(Bucket=ARCHIVE, Key="cell-a/batch", Body=b"[]")

    empty_tables([spec["TableName"] for spec in specs])
    empty_bucket(ARCHIVE)

    client = BOTO.client("dynamodb")
    for spec in specs:
        assert client.scan(TableName=spec["TableName"], ConsistentRead=True)["Count"] == 0
        for index in spec.get("GlobalSecondaryIndexes", []):
            assert index_query(client, spec, index) == 0
    assert s3.list_objects_v2(Bucket=ARCHIVE).get("KeyCount") == 0
    assert s3.head_bucket(Bucket=ARCHIVE)  # the bucket itself stays


def scanned(client: Any, specs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every table's items and every index's answer for item 0, as the API gives them."""
    return {spec["TableName"]: [client.scan(TableName=spec["TableName"], ConsistentRead=True)["Items"]]
            + [index_query(client, spec, index) for index in spec.get("GlobalSecondaryIndexes", [])]
            for spec in specs}


def test_a_restored_snapshot_is_what_the_api_saw_and_later_writes_do_not_reach_it(dynamodb: Any) -> None:
    specs = [spec["create"] for spec in table_specs(PREFIX)]
    assert moto_patches.table_names() == set(dynamodb.list_tables()["TableNames"])
    assert create_tables(dynamodb, PREFIX) == [], "all there: what the dynamodb fixture takes a match to mean"
    for spec in specs:
        for n in range(3):
            dynamodb.put_item(TableName=spec["TableName"], Item=item(spec, n))
    seen = scanned(dynamodb, specs)
    snapshot = moto_patches.snapshot_tables([spec["TableName"] for spec in specs])
    for _ in range(2):  # the second restore: the writes after the first one did not reach the snapshot
        for spec in specs:
            key = {k["AttributeName"]: item(spec, 0)[k["AttributeName"]] for k in spec["KeySchema"]}
            dynamodb.delete_item(TableName=spec["TableName"], Key=key)
            dynamodb.put_item(TableName=spec["TableName"], Item=item(spec, 7))
        assert scanned(dynamodb, specs) != seen
        moto_patches.restore_tables(snapshot)
        assert scanned(BOTO.client("dynamodb"), specs) == seen


def test_written_once_refuses_tables_not_as_they_were_the_first_time(dynamodb: Any) -> None:
    spec = table_specs(PREFIX)[0]["create"]
    writes: list[int] = []

    def write() -> None:
        writes.append(1)
        dynamodb.put_item(TableName=spec["TableName"], Item=item(spec, 1))

    name = f"moto-state-check-{id(writes)}"
    written_once(name, write)
    empty_tables([spec["TableName"]])
    written_once(name, write)  # restored, not written again
    assert writes == [1] and dynamodb.scan(TableName=spec["TableName"])["Count"] == 1
    dynamodb.put_item(TableName=spec["TableName"], Item=item(spec, 2))  # a write before it: refused
    with pytest.raises(AssertionError, match="not as the first time"):
        written_once(name, write)


# --- moto's Query, reading only its candidates (tests/moto_patches.py): the same answers as moto's ---------

keys_s = st.sampled_from(["a", "b", "c"])
keys_n = st.sampled_from(["1", "1.0", "2", "-3", "10"])  # "1" and "1.0" are one number to DynamoDB


@st.composite
def tables_and_queries(draw: st.DrawFn) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
    ranged = draw(st.booleans())
    items = draw(st.lists(st.fixed_dictionaries(
        {"pk": keys_s.map(lambda v: {"S": v}), "sk": keys_n.map(lambda v: {"N": v})},
        optional={"gk": keys_s.map(lambda v: {"S": v}), "gr": keys_n.map(lambda v: {"N": v})}), max_size=25))
    if not ranged:
        items = [{k: v for k, v in item.items() if k != "sk"} for item in items]
    queries = []
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.sampled_from([None, "by_g", "by_g_hash_only"]))
        key, sort = ("pk", "sk") if index is None else ("gk", "gr" if index == "by_g" else None)
        condition, values = "#k = :k", {":k": {"S": draw(keys_s)}}
        if sort and (index or ranged) and draw(st.booleans()):
            condition += draw(st.sampled_from([" AND #s = :s", " AND #s < :s", " AND #s >= :s"]))
            values[":s"] = {"N": draw(keys_n)}
        names = {"#k": key} | ({"#s": sort} if ":s" in values else {})
        query = {"KeyConditionExpression": condition, "ExpressionAttributeNames": names,
                 "ExpressionAttributeValues": values, "ScanIndexForward": draw(st.booleans())}
        if index:
            query["IndexName"] = index
        if draw(st.booleans()):
            query["Limit"] = draw(st.integers(1, 4))
        queries.append(query)
    return ranged, items, queries


def pages(client: Any, table: str, query: dict[str, Any]) -> list[Any]:
    answers, start = [], None
    while True:
        page = client.query(TableName=table, **query, **({"ExclusiveStartKey": start} if start else {}))
        answers.append((page["Items"], page["Count"], page["ScannedCount"], page.get("LastEvaluatedKey")))
        start = page.get("LastEvaluatedKey")
        if not start:
            return answers


@pytest.fixture
def check_tables(dynamodb: Any) -> Iterator[dict[bool, str]]:
    """A table with a sort key and one without, both with the two indexes: made once for all of Hypothesis's
    examples (each empties its own in place first, as the fixtures do: checked above), dropped after."""
    tables = {ranged: f"moto-query-check-{'ranged' if ranged else 'hash'}" for ranged in (True, False)}
    for ranged, table in tables.items():
        key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}] + (
            [{"AttributeName": "sk", "KeyType": "RANGE"}] if ranged else [])
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                                  for a, t in [("pk", "S"), ("sk", "N"), ("gk", "S"), ("gr", "N")]
                                  if ranged or a != "sk"],
            GlobalSecondaryIndexes=[
                {"IndexName": "by_g", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"},
                               {"AttributeName": "gr", "KeyType": "RANGE"}]},
                {"IndexName": "by_g_hash_only", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}]},
            ])
    try:
        yield tables
    finally:
        for table in tables.values():
            dynamodb.delete_table(TableName=table)


@given(case=tables_and_queries())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_query_reading_its_candidates_answers_as_moto_does(
    dynamodb: Any, check_tables: dict[bool, str], case: tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    ranged, items, queries = case
    table = check_tables[ranged]
    empty_tables([table])
    # The table as the items put one after another leave it (a later item with the same key replaces the
    # earlier one; "1" and "1.0" are one key), written in one request: a batch may not name a key twice.
    stored = {(item["pk"]["S"], Decimal(item["sk"]["N"]) if ranged else None): item for item in items}
    if stored:
        dynamodb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": i}} for i in stored.values()]})
    for query in queries:
        ours = pages(dynamodb, table, query)
        moto_patches.uninstall()
        try:
            theirs = pages(dynamodb, table, query)
        finally:
            moto_patches.install()
        assert ours == theirs, query


# --- moto's serializer, reading a dict's keys with the aliases asked once (tests/moto_patches.py) ----------

RICH = {"pk": {"S": "a"}, "sk": {"N": "1"}, "gk": {"S": "g"}, "gr": {"N": "2.50"}, "b": {"B": b"\x00z\xff"},
        "bs": {"BS": [b"x", b"y"]}, "ns": {"NS": ["1", "-2.5"]}, "ss": {"SS": ["p", "q"]}, "nul": {"NULL": True},
        "m": {"M": {"l": {"L": [{"S": "s"}, {"BOOL": False}, {"M": {}}, {"L": []}]}, "n": {"N": "0"}}}}


def requests(table: str) -> list[tuple[str, dict[str, Any]]]:
    """One of each request the product and the tests make, with every kind of attribute value and of error."""
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    cost = {"ReturnConsumedCapacity": "INDEXES"}
    return [
        ("put_item", {"TableName": table, "Item": RICH, "ReturnValues": "ALL_OLD", **cost}),
        ("put_item", {"TableName": table, "Item": RICH | {"x": {"S": "again"}}, "ReturnValues": "ALL_OLD"}),
        ("put_item", {"TableName": table, "Item": RICH, "ConditionExpression": "attribute_not_exists(pk)",
                      "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}),
        ("get_item", {"TableName": table, "Key": key, "ConsistentRead": True, **cost}),
        ("get_item", {"TableName": table, "Key": {"pk": {"S": "none"}, "sk": {"N": "1"}}}),
        ("update_item", {"TableName": table, "Key": key, "UpdateExpression": "SET n2 = :v ADD ns :s",
                         "ExpressionAttributeValues": {":v": {"N": "7"}, ":s": {"NS": ["9"]}},
                         "ReturnValues": "ALL_NEW"}),
        ("update_item", {"TableName": table, "Key": key, "UpdateExpression": "REMOVE x",
                         "ReturnValues": "UPDATED_OLD"}),
        ("batch_write_item", {"RequestItems": {table: [{"PutRequest": {"Item": RICH | {"sk": {"N": str(n)}}}}
                                                       for n in range(2, 6)]}}),
        ("query", {"TableName": table, "KeyConditionExpression": "pk = :p", "Limit": 2,
                   "ExpressionAttributeValues": {":p": {"S": "a"}}, **cost}),
        ("query", {"TableName": table, "IndexName": "by_g", "KeyConditionExpression": "gk = :g",
                   "ExpressionAttributeValues": {":g": {"S": "g"}}, "ProjectionExpression": "pk, m.l[0]"}),
        ("query", {"TableName": table, "KeyConditionExpression": "pk = :p", "Select": "COUNT",
                   "ExpressionAttributeValues": {":p": {"S": "a"}}}),
        ("scan", {"TableName": table, "FilterExpression": "sk > :n", "ExpressionAttributeValues": {":n": {"N": "2"}}}),
        ("batch_get_item", {"RequestItems": {table: {"Keys": [key, {"pk": {"S": "a"}, "sk": {"N": "3"}}]}}}),
        ("transact_get_items", {"TransactItems": [{"Get": {"TableName": table, "Key": key}}]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": table, "Item": RICH | {"sk": {"N": "9"}}}},
            {"Update": {"TableName": table, "Key": key, "UpdateExpression": "SET t = :t",
                        "ExpressionAttributeValues": {":t": {"BOOL": True}}}}]}),
        ("transact_write_items", {"TransactItems": [
            {"ConditionCheck": {"TableName": table, "Key": key, "ConditionExpression": "attribute_not_exists(pk)",
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]}),
        ("delete_item", {"TableName": table, "Key": key, "ReturnValues": "ALL_OLD"}),
        ("describe_table", {"TableName": table}),
        ("describe_time_to_live", {"TableName": table}),
        ("list_tables", {}),
        ("get_item", {"TableName": "no-such-table", "Key": key}),
    ]


def answers(client: Any, table: str) -> list[Any]:
    out: list[Any] = []
    for method, kwargs in requests(table):
        try:
            answer = getattr(client, method)(**kwargs)
        except client.exceptions.ClientError as error:
            answer = error.response
        out.append((method, {k: v for k, v in answer.items() if k != "ResponseMetadata"}))
    return out


def test_responses_are_motos_own_with_the_aliases_asked_once(check_tables: dict[bool, str]) -> None:
    client, table = BOTO.client("dynamodb"), check_tables[True]
    empty_tables([table])
    before = moto_patches.snapshot_tables([table])
    ours = answers(client, table)
    moto_patches.restore_tables(before)
    moto_patches.uninstall()
    try:
        theirs = answers(client, table)
    finally:
        moto_patches.install()
    assert ours == theirs
    errors = [a for _, a in ours if "Error" in a]
    assert len(errors) == 3 and errors[0]["Item"]["b"] == {"B": b"\x00z\xff"}, "each kind of answer was made"
    assert ours[8][1]["Count"] == 2 and ours[8][1]["ConsumedCapacity"]["Table"] and "LastEvaluatedKey" in ours[8][1]
