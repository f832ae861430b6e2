"""`cutover arm|rollback --stage local` apply flags by restarting only the local stack's app."""

from __future__ import annotations

import json
import urllib.request

import pytest

from sim import stack


@pytest.mark.slow
# `make test-e2e` runs these one at a time, unloaded: they share .local/ and the local stage of .chalice/config.json.
def test_restart_app_keeps_the_stack_and_serves_again() -> None:
    started_here = stack.running() is None
    info = stack.up()
    try:
        again = stack.restart_app()
        assert again is not None
        assert again.pids["api"] != info.pids["api"] and not stack.alive(info.pids["api"])
        assert {k: v for k, v in again.pids.items() if k != "api"} == {
            k: v for k, v in info.pids.items() if k != "api"}
        assert again.api_url == info.api_url and stack.load() == again
        with urllib.request.urlopen(again.api_url + "/health", timeout=5) as res:
            assert json.load(res)["ok"] is True
    finally:
        if started_here:
            stack.down(quiet=True)
    if started_here:
        assert stack.restart_app() is None  # no stack: nothing to restart, said plainly by the CLI
