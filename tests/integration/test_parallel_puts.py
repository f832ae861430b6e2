"""The reducer's conditional puts several at once (chalicelib/adapters/dynamodb/parallel.py), on moto: each
write keeps its own condition, the count is exact, a failure is raised as the store's failure."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb.parallel import OUTBOX_PUTS_AT_ONCE, count_each
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.core.outbox import OutboxRow
from chalicelib.ports import StoreUnavailable
from tests.conftest import PREFIX, T0

H = 3600


def row(i: int, value: str = "10") -> OutboxRow:
    return OutboxRow(f"o{i}:{T0}:m", f"o{i}", T0, T0 + H, "m", Decimal(value), "first", "pending", samples=3,
                     run_id="run-1", created_at=T0 + H)


class Recording:
    """The client, noting which thread made each PutItem; the `fail_at`-th one is throttled."""

    def __init__(self, client: Any, fail_at: int = 0) -> None:
        self.client, self.fail_at = client, fail_at
        self.threads: set[int] = set()
        self.puts = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def put_item(self, **request: Any) -> Any:
        with self.lock:
            self.puts += 1
            self.threads.add(threading.get_ident())
            throttled = self.puts == self.fail_at
        if throttled:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutItem")
        return self.client.put_item(**request)


def test_outbox_rows_are_put_at_once_each_still_conditional(dynamodb: Any) -> None:
    client = Recording(dynamodb)
    store = DynamoStore(client, PREFIX, 86400, sample_shards=2)
    assert store.create_outbox_rows([row(i) for i in range(10)]) == 10
    assert store.transition(f"o3:{T0}:m", "pending", "sent", now=T0 + H + 5)
    # 10 rows again (one of them sent, none may change) and 40 new, one of them twice.
    again = [row(i, value="99") for i in range(10)] + [row(i) for i in range(10, 50)] + [row(20, value="7")]
    assert store.create_outbox_rows(again) == 40
    assert len(client.threads) > 1, "several puts in flight"
    assert client.puts == 10 + 50, "a row twice in one call is put once"
    sent = store.get_outbox_row(f"o3:{T0}:m")
    assert sent is not None and (sent.state, sent.value) == ("sent", Decimal(10))
    assert store.get_outbox_row(f"o20:{T0}:m").value == Decimal(10)  # type: ignore[union-attr]
    assert all(store.get_outbox_row(f"o{i}:{T0}:m") is not None for i in range(50))


def test_a_throttled_put_fails_the_call_as_the_store_unavailable_and_a_retry_completes_it(dynamodb: Any) -> None:
    store = DynamoStore(Recording(dynamodb, fail_at=7), PREFIX, 86400, sample_shards=2)
    rows = [row(i) for i in range(3 * OUTBOX_PUTS_AT_ONCE)]
    with pytest.raises(StoreUnavailable):
        store.create_outbox_rows(rows)
    done = sum(store.get_outbox_row(r.id) is not None for r in rows)
    assert done < len(rows)
    assert store.create_outbox_rows(rows) == len(rows) - done  # the retry puts only what is missing


def test_one_at_once_runs_in_order_in_the_callers_thread() -> None:
    seen: list[tuple[int, int]] = []

    def even(i: int) -> bool:
        seen.append((i, threading.get_ident()))
        return i % 2 == 0

    assert count_each(even, [3, 1, 2, 4], 1) == 2
    assert seen == [(3, threading.get_ident()), (1, threading.get_ident()), (2, threading.get_ident()),
                    (4, threading.get_ident())]
