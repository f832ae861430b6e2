"""One suite, two task queues: MemoryQueue must deliver as SQS (moto) does where the workers rely on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.core.send_tasks import GroupedMessage
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


# --- the send's FIFO queue: a group at a time, in order, repeats dropped ------------------------------


@pytest.fixture(params=["memory", "sqs"])
def fifo(request: pytest.FixtureRequest) -> Iterator[MemoryQueue | SqsQueue]:
    if request.param == "memory":
        yield MemoryQueue(visibility=30)
        return
    request.getfixturevalue("aws")
    sqs = BOTO.client("sqs")
    url = sqs.create_queue(QueueName="send-tasks.fifo",
                           Attributes={"VisibilityTimeout": "30", "FifoQueue": "true"})["QueueUrl"]
    yield SqsQueue(sqs, url)
    sqs.delete_queue(QueueUrl=url)


def _msg(body: str, group: str) -> GroupedMessage:
    return GroupedMessage(body, group, f"dedup-{body}")


def test_fifo_gives_one_group_to_one_receiver_at_a_time_in_order(fifo: MemoryQueue | SqsQueue) -> None:
    fifo.send_grouped([_msg("a1", "a"), _msg("a2", "a")])
    fifo.send_grouped([_msg("b1", "b")])
    first = fifo.receive(1)
    assert [b for _, b in first] == ["a1"]
    second = fifo.receive(10)
    assert [b for _, b in second] == ["b1"], "a2 waits while a1 is in flight"
    fifo.delete([r for r, _ in first])
    third = fifo.receive(10)
    assert [b for _, b in third] == ["a2"], "then the group goes on, in order"


def test_fifo_drops_a_repeated_dedup_id(fifo: MemoryQueue | SqsQueue) -> None:
    fifo.send_grouped([_msg("t", "a")])
    fifo.send_grouped([_msg("t", "a")])
    got = drain(fifo)
    assert [b for _, b in got] == ["t"]


def test_fifo_repeat_after_the_dedup_window_is_a_new_message() -> None:
    now = [0]
    queue = MemoryQueue(lambda: now[0])
    queue.send_grouped([_msg("t", "a")])
    now[0] = 300
    queue.send_grouped([_msg("t", "a")])
    assert len(queue) == 2


def test_fifo_message_not_deleted_holds_its_group_until_it_shows_again() -> None:
    now = [0]
    queue = MemoryQueue(lambda: now[0], visibility=30)
    queue.send_grouped([_msg("a1", "a"), _msg("a2", "a")])
    [(receipt, _)] = queue.receive(1)
    now[0] = 29
    assert queue.receive(10) == []
    now[0] = 30
    assert [b for _, b in queue.receive(10)] == ["a1", "a2"], "the killed worker's message first"
    assert receipt


def test_sqs_refusing_send_tasks_is_store_unavailable() -> None:
    class Broken:
        def send_message_batch(self, **_: Any) -> dict[str, Any]:
            return {"Failed": [{"Id": "0"}], "Successful": []}

    with pytest.raises(StoreUnavailable):
        SqsQueue(Broken(), "url").send_grouped([_msg("x", "g")])


def test_fifo_keeps_each_groups_order_however_many_senders_the_adapter_uses(fifo: MemoryQueue | SqsQueue) -> None:
    messages = [_msg(f"{g}-{n:02d}", f"g{g}") for n in range(9) for g in range(7)]
    fifo.send_grouped(messages)
    got: list[str] = []
    while batch := fifo.receive(10):
        got += [b for _, b in batch]
        fifo.delete([r for r, _ in batch])
    assert sorted(got) == sorted(m.body for m in messages)
    for g in range(7):
        mine = [b for b in got if b.startswith(f"{g}-")]
        assert mine == sorted(mine), f"group {g} out of order: {mine}"
