"""One suite, two task queues: MemoryQueue must deliver as SQS (moto) does where the workers rely on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.ports import QueueConsumer, StoreUnavailable
from tests.conftest import BOTO


@pytest.fixture(params=["memory", "sqs"])
def queue(request: pytest.FixtureRequest) -> Iterator[QueueConsumer]:
    if request.param == "memory":
        yield MemoryQueue(visibility=30)
        return
    request.getfixturevalue("aws")
    sqs = BOTO.client("sqs")
    url = sqs.create_queue(QueueName="rollup-tasks", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    yield SqsQueue(sqs, url)
    sqs.delete_queue(QueueUrl=url)


def drain(queue: QueueConsumer) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    while batch := queue.receive(10):
        got += batch
    return got


def test_every_message_sent_is_received_once_until_deleted(queue: QueueConsumer) -> None:
    bodies = [f'{{"n": {i}}}' for i in range(23)]
    queue.send(bodies)
    got = drain(queue)
    assert sorted(b for _, b in got) == sorted(bodies), "all of them, in batches of at most 10"
    assert queue.receive(10) == [], "hidden while received and not deleted"
    queue.delete([r for r, _ in got])
    assert drain(queue) == []


def test_receive_takes_at_most_the_limit(queue: QueueConsumer) -> None:
    queue.send(["a", "b", "c"])
    assert len(queue.receive(2)) == 2


def test_send_nothing_is_nothing(queue: QueueConsumer) -> None:
    queue.send([])
    assert queue.receive(10) == []


def test_a_message_not_deleted_comes_back_after_its_visibility_timeout() -> None:
    now = [0]
    queue = MemoryQueue(lambda: now[0], visibility=30)
    queue.send(["task"])
    [(first, _)] = queue.receive(10)
    now[0] = 29
    assert queue.receive(10) == []
    now[0] = 30
    [(second, body)] = queue.receive(10)
    queue.delete([first])
    assert body == "task" and len(queue) == 1, "a stale receipt deletes nothing"
    queue.delete([second])
    assert len(queue) == 0


def test_sqs_failures_are_store_unavailable() -> None:
    class Broken:
        def send_message_batch(self, **_: Any) -> dict[str, Any]:
            return {"Failed": [{"Id": "0"}], "Successful": []}

        def receive_message(self, **_: Any) -> dict[str, Any]:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://sqs")

    q = SqsQueue(Broken(), "url")
    with pytest.raises(StoreUnavailable):
        q.send(["x"])
    with pytest.raises(StoreUnavailable):
        q.receive(1)
