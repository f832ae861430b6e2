"""The bench harness: its moto speed-up keeps transactions all-or-nothing."""

from __future__ import annotations

import botocore.exceptions
import pytest

from bench.harness import moto_store


def test_a_cancelled_transaction_still_rolls_back_under_the_one_backup_patch() -> None:
    with moto_store([]) as (store, accountant, client):
        table = store.control_table
        client.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "1"}})
        actions = [
            {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": "c"}, "sk": {"S": "1"}}}},
            {
                "Put": {
                    "TableName": table,
                    "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        with pytest.raises(botocore.exceptions.ClientError, match="TransactionCanceled"):
            client.transact_write_items(TransactItems=actions)
        keys = {i["pk"]["S"] for i in client.scan(TableName=table)["Items"]}
        assert keys == {"a"}, "the first two puts were rolled back"
        client.transact_write_items(TransactItems=actions[:2])
        assert {i["pk"]["S"] for i in client.scan(TableName=table)["Items"]} == {"a", "b", "c"}
        with pytest.raises(botocore.exceptions.ClientError, match="TransactionCanceled"):
            client.transact_write_items(TransactItems=actions)
        keys = {i["pk"]["S"] for i in client.scan(TableName=table)["Items"]}
        assert keys == {"a", "b", "c"}, "a rollback restores this call's state, not an older backup"
        update = {
            "Update": {
                "TableName": table,
                "Key": {"pk": {"S": "b"}, "sk": {"S": "1"}},
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": {"N": "7"}},
            }
        }
        with pytest.raises(botocore.exceptions.ClientError, match="TransactionCanceled"):
            client.transact_write_items(TransactItems=[update, actions[2]])
        b = client.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})["Item"]
        assert "v" not in b, "an update made in place is rolled back too"
        assert accountant.units[f"TransactWriteItems {table}"] == 2 * (3 + 2 + 3 + 2)


def test_the_moto_patch_is_scoped_to_the_bench_and_restored() -> None:
    import moto.dynamodb.models as models

    original = models.DynamoDBBackend.transact_write_items
    with moto_store([]):
        assert models.DynamoDBBackend.transact_write_items is not original
    assert models.DynamoDBBackend.transact_write_items is original, "later tests must run on moto's own code"
