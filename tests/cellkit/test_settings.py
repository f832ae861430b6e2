"""The cell's money flag is exact: PRO_BILLING_AUTHORITY stops the billers only for exactly `edge`."""

from __future__ import annotations

import logging

import pytest

from cellkit.bootstrap import build
from cellkit.ports import SendResult
from cellkit.settings import load
from tests.cellkit.conftest import Captured


class NoStripe:
    def send(self, event_name: str, identifier: str, customer: str, value: str, timestamp: int) -> SendResult:
        return SendResult("retry")


@pytest.mark.parametrize("value, authority, warned", [
    ("edge", "edge", False), ("cell", "cell", False),
    ("edge ", "cell", True), (" edge", "cell", True), ("EDGE", "cell", True), ("edge\n", "cell", True),
    ("", "cell", True), ("yes", "cell", True),
])
def test_only_exactly_edge_stands_the_billers_down_and_others_are_named(
    value: str, authority: str, warned: bool, log: tuple[logging.Logger, Captured]
) -> None:
    settings = load({"PRO_BILLING_AUTHORITY": value, "CELL_DATABASE_URL": "memory://"})
    assert settings.authority == authority  # before: "edge " stopped the billers
    cell = build(settings, log[0], stripe=NoStripe())
    assert cell.billers.start() is (authority == "cell")
    warnings = log[1].events("flag_not_exact")
    assert [(w.flag, w.value, w.levelno) for w in warnings] == (  # type: ignore[attr-defined]
        [("PRO_BILLING_AUTHORITY", value, logging.WARNING)] if warned else [])
