"""A transaction's ClientRequestToken (the free tier's account commits): DynamoDB replays a token's first
answer for 10 minutes only when the parameters are identical, and raises IdempotentParameterMismatchException
otherwise (moto ignores tokens, so this checks what the adapter asks for)."""

from __future__ import annotations

import copy
from typing import Any

from chalicelib.adapters.dynamodb.items import transaction_token


def actions(run_id: str) -> list[dict[str, Any]]:
    return [
        {"Put": {"TableName": "control", "Item": {"pk": {"S": "acct#o1"}, "sk": {"S": "account"},
                                                  "run": {"S": run_id}, "version": {"N": "3"}},
                 "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": "2"}}}},
        {"Update": {"TableName": "samples", "Key": {"pk": {"S": "f#1"}, "sk": {"S": "e1"}},
                    "UpdateExpression": "REMOVE late_pk, late_sk", "ConditionExpression": "attribute_exists(late_pk)"}},
    ]


def test_a_retry_reuses_the_token_and_another_runs_commit_does_not() -> None:
    mine = actions("run-1")
    first, retry = transaction_token(mine), transaction_token(copy.deepcopy(mine))
    # The same request again (a retry after its answer was lost): the same token, so DynamoDB does not apply
    # it twice. The same change by a racing run (its own run id): another request, so another token; its
    # conditions refuse it rather than DynamoDB raising a parameter mismatch.
    racing = transaction_token(actions("run-2"))
    assert first == retry and racing != first
    assert all(0 < len(t) <= 36 for t in (first, racing))
