"""DynamoDB primitives every adapter shares: (de)serialization, the one conditional-write
helper, error mapping (retryable -> StoreUnavailable, permanent -> StoreRejected), batches and pages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import DecimalException
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from chalicelib.ports import StoreRejected, StoreUnavailable

T = TypeVar("T")


P = ParamSpec("P")


_ser = TypeSerializer()


_de = TypeDeserializer()


_BATCH_WRITE = 25


_BATCH_GET = 100


_MAX_ATTEMPTS = 8


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def conditional_write(operation: Callable[..., Any], **request: Any) -> bool:
    """One PutItem, UpdateItem or DeleteItem with a ConditionExpression: True if applied, False if its
    condition did not hold. The one place a failed condition becomes an answer instead of an error."""
    try:
        operation(**request)
    except ClientError as exc:
        if is_conditional_failure(exc):
            return False
        raise
    return True


def conditional_transaction(client: Any, actions: list[dict[str, Any]], token: str) -> bool:
    """One TransactWriteItems: True if applied, False if any of its conditions failed (nothing written)."""
    try:
        client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            return False
        raise
    return True


def conditional_update(client: Any, **request: Any) -> bool:
    return conditional_write(client.update_item, **request)


# Errors no retry can cure: the request itself is wrong (a key over DynamoDB's size limits, an
# attribute of the wrong type for a key or index, an item over 400 KB). Everything else
# (throttling, 5xx, timeouts, a conflicting transaction) may pass on retry.
PERMANENT_ERROR_CODES = frozenset({"ValidationException", "SerializationException"})


def guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn DynamoDB failures into StoreUnavailable (503: the sender retries) or, when the
    request can never succeed, StoreRejected (4xx: retrying forever would block the sender)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise
            error = exc.response.get("Error", {})
            if error.get("Code") in PERMANENT_ERROR_CODES:
                raise StoreRejected(f"{fn.__name__}: {error.get('Code')}: {error.get('Message', '')}"[:500]) from exc
            raise StoreUnavailable(f"{fn.__name__}: {error.get('Code')}") from exc
        except ParamValidationError as exc:
            # botocore's own check of the request shape (a key that is not a string, ...): permanent.
            raise StoreRejected(f"{fn.__name__}: {exc}"[:500]) from exc
        except UnicodeError as exc:
            raise StoreRejected(f"{fn.__name__}: text that is not valid UTF-8") from exc
        except DecimalException as exc:
            # boto3's serializer refuses numbers DynamoDB cannot hold (over 38 digits, beyond 1e126 or
            # below 1e-130): the request can never succeed, so 4xx, not an unhandled 500.
            raise StoreRejected(f"{fn.__name__}: a number DynamoDB cannot store") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{fn.__name__}: {exc}") from exc

    return wrapper


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * (2**attempt), 1.0))


class Tables:
    """The four tables of one deployment, and the batch and page helpers over them."""

    def __init__(self, client: Any, table_prefix: str, retention_seconds: int, sample_shards: int = 32) -> None:
        self.client = client
        # The shard count new buckets are written with (SAMPLE_SHARDS); each bucket's own is recorded.
        self.sample_shards = sample_shards
        self._bucket_shards: dict[int, int] = {}
        self.samples_table = f"{table_prefix}-samples"
        self.orgs_table = f"{table_prefix}-orgs"
        self.outbox_table = f"{table_prefix}-outbox"
        self.control_table = f"{table_prefix}-control"
        self.retention_seconds = retention_seconds

    def _batch_write(self, table: str, requests: list[dict[str, Any]]) -> None:
        for i in range(0, len(requests), _BATCH_WRITE):
            pending: dict[str, Any] = {table: requests[i : i + _BATCH_WRITE]}
            for attempt in range(_MAX_ATTEMPTS):
                out = self.client.batch_write_item(RequestItems=pending)
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise StoreUnavailable(f"batch write to {table}: items stayed unprocessed")

    def _batch_get(self, table: str, keys: list[dict[str, Any]], consistent: bool = False) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for i in range(0, len(keys), _BATCH_GET):
            pending: dict[str, Any] = {table: {"Keys": keys[i : i + _BATCH_GET], "ConsistentRead": consistent}}
            for attempt in range(_MAX_ATTEMPTS):
                out = self.client.batch_get_item(RequestItems=pending)
                found.extend(out.get("Responses", {}).get(table, []))
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise StoreUnavailable(f"batch get from {table}: keys stayed unprocessed")
        return found

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            out = guarded(self.client.query)(**kwargs)
            yield from out.get("Items", [])
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
