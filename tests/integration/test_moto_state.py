"""The fixtures empty moto's tables and bucket in place, not through the API: check that what the API
sees afterwards is empty, indexes included, on the moto version installed (an upgrade that moved moto's
items elsewhere fails here, not as leftovers leaking between tests)."""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.dynamodb.tables import table_specs
from tests.conftest import ARCHIVE, BOTO, PREFIX, empty_bucket, empty_tables


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
