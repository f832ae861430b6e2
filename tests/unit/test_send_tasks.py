"""The send's tasks on the wire of a FIFO queue, and the 429 back-off: pure."""

from __future__ import annotations

import json

import pytest

from chalicelib.core.fanout import TaskError
from chalicelib.core.send_tasks import (
    MAX_TASK_ROWS,
    SendTask,
    backoff_seconds,
    in_groups,
    parse_send_task,
    send_tasks,
)


def test_a_task_round_trips_and_its_ids_fit_sqs() -> None:
    task = SendTask("cus_" + "x" * 250, ("org:0:m", "org:3600:m"))
    assert parse_send_task(task.body()) == task
    m = task.message()
    assert len(m.group) <= 128 and len(m.dedup_id) <= 128
    assert m == SendTask(task.customer, task.rows).message(), "deterministic: a repeat is the same message"
    assert m.dedup_id != SendTask(task.customer, task.rows[:1]).message().dedup_id
    assert m.group == SendTask(task.customer, ("other",)).message().group, "the group is the customer"


@pytest.mark.parametrize("body", [
    "nope", "[]", json.dumps({"kind": "shard"}), json.dumps({"kind": "send", "customer": "", "rows": ["a"]}),
    json.dumps({"kind": "send", "customer": "cus_a", "rows": []}),
    json.dumps({"kind": "send", "customer": "cus_a", "rows": [1]}),
    json.dumps({"kind": "send", "customer": "cus_a", "rows": ["a"] * (MAX_TASK_ROWS + 1)}),
])
def test_what_is_no_send_task_is_refused(body: str) -> None:
    with pytest.raises(TaskError):
        parse_send_task(body)


def test_tasks_are_per_customer_in_the_order_given_and_chunked() -> None:
    tasks = send_tasks({"cus_b": ["b1"], "cus_a": ["a1", "a2", "a3"]}, max_rows=2)
    assert tasks == [SendTask("cus_a", ("a1", "a2")), SendTask("cus_a", ("a3",)), SendTask("cus_b", ("b1",))]
    assert len(send_tasks({"cus_a": [str(i) for i in range(250)]}, max_rows=1000)) == 3, "capped at 100 rows"


def test_a_batch_groups_by_customer_in_delivery_order_and_an_unusable_message_alone() -> None:
    a1, a2, b1 = SendTask("cus_a", ("1",)), SendTask("cus_a", ("2",)), SendTask("cus_b", ("3",))
    groups = in_groups([("m1", a1), ("m2", b1), ("m3", None), ("m4", a2)])
    assert list(groups.values()) == [[("m1", a1), ("m4", a2)], [("m2", b1)], [("m3", None)]]


def test_backoff_honours_retry_after_grows_and_is_bounded() -> None:
    assert backoff_seconds(0, 2.0, 0.0, 10.0) == 2.0, "never less than Stripe's Retry-After"
    assert backoff_seconds(0, None, 0.0, 10.0) == 0.5
    waits = [backoff_seconds(n, 1.0, 1.0, 10.0) for n in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0], "doubling, capped"
    assert backoff_seconds(3, 1.0, 0.0, 10.0) < backoff_seconds(3, 1.0, 1.0, 10.0), "jitter spreads the workers"
    assert backoff_seconds(2, -1.0, 1.0, 10.0) == 2.0, "a nonsense Retry-After falls back to 0.5 s doubling"
