"""The edge answers 503 with Retry-After for a window it has not settled yet: the checker waits and asks again."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.memory import MemoryStore
from cellkit.ports import HttpResponse
from cellkit.services.parity import ParityChecker, ParityError, ParityNotSettled
from tests.cellkit.conftest import T0, Captured

H = 3600
SETTLING = HttpResponse(503, b'{"error": "not settled", "settling": [1]}', {"Retry-After": "60"})


class Edge:
    cell_id = "cell-a"

    def __init__(self, answers: list[HttpResponse]) -> None:
        self.answers, self.asked, self.posted = answers, 0, []  # type: ignore[var-annotated]

    def get(self, path: str, params: list[tuple[str, str]]) -> HttpResponse:
        self.asked += 1
        return self.answers.pop(0)

    def post_json(self, path: str, body: Any) -> HttpResponse:
        self.posted.append(body)
        return HttpResponse(201, b"{}", {})


def ok() -> HttpResponse:
    return HttpResponse(200, json.dumps({"window": {"from": T0, "to": T0 + H}, "orgs": []}).encode(), {})


def checker(edge: Edge, log: tuple[logging.Logger, Captured], slept: list[float]) -> ParityChecker:
    c = ParityChecker(MemoryStore(), edge, ManualClock((T0 + 2 * H) * 1_000_000), log[0])  # type: ignore[arg-type]
    c.sleep = slept.append
    return c


def test_the_checker_waits_as_asked_and_asks_again(log: tuple[logging.Logger, Captured]) -> None:
    edge, slept = Edge([SETTLING, SETTLING, ok()]), []  # type: ignore[var-annotated]
    report = checker(edge, log, slept).check((T0, T0 + H))
    assert report.clean and edge.asked == 3 and slept == [60, 60] and len(edge.posted) == 1
    assert len(log[1].events("parity_waiting_for_edge")) == 2


def test_past_its_budget_it_leaves_the_window_to_the_next_check_quietly(log: tuple[logging.Logger, Captured]) -> None:
    edge, slept = Edge([SETTLING] * 20), []  # type: ignore[var-annotated]
    c = checker(edge, log, slept)
    c.wait_budget_s = 120
    with pytest.raises(ParityNotSettled):
        c.check((T0, T0 + H))
    assert slept == [60, 60] and edge.posted == []
    assert c.scheduled_check() is None, "the run loop's check: no exception, so no loop_step_failed"
    assert log[1].events("parity_not_settled")


def test_a_503_without_retry_after_is_a_failure(log: tuple[logging.Logger, Captured]) -> None:
    edge = Edge([HttpResponse(503, b'{"error": "store unavailable"}', {})])
    with pytest.raises(ParityError) as err:
        checker(edge, log, []).check((T0, T0 + H))
    assert not isinstance(err.value, ParityNotSettled)
