"""The cutover CLI reaches the local stack only through the LocalStack port its entry point hands it
(`python -m sim.operator`): the product's CLI alone never restarts anything, and never imports sim/."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from chalicelib.core.stage_config import CONFIG
from chalicelib.entrypoints.cli import app
from chalicelib.entrypoints.cli_cutover import LOCAL_STAGE, LocalStack, apply, local_stack, running_shadow
from chalicelib.entrypoints.cli_output import Handed
from sim.operator import SimLocalStack


class FakeStack:
    def __init__(self, url: str | None) -> None:
        self.url, self.restarts = url, 0

    def api_url(self) -> str | None:
        return self.url

    def restart_app(self) -> str | None:
        self.restarts += 1
        return self.url


def test_arm_on_the_local_stage_restarts_the_app_it_was_handed() -> None:
    stack = FakeStack("http://127.0.0.1:9")
    assert apply(LOCAL_STAGE, CONFIG, stack) == "restarted the local app at http://127.0.0.1:9 with the new flags"
    assert stack.restarts == 1


def test_without_a_stack_nothing_is_restarted_and_it_says_so() -> None:
    assert "no local stack running" in apply(LOCAL_STAGE, CONFIG, None)
    assert "no local stack running" in apply(LOCAL_STAGE, CONFIG, FakeStack(None))
    stack = FakeStack("http://127.0.0.1:9")
    assert apply(LOCAL_STAGE, Path("/elsewhere/config.json"), stack).startswith("now apply it")  # not the stack's
    assert apply("prod", CONFIG, stack).startswith("now apply it: chalice deploy --stage prod")
    assert stack.restarts == 0


def test_the_running_apps_shadow_is_asked_only_where_a_stack_says_it_runs() -> None:
    assert running_shadow(LOCAL_STAGE, None, None) is None
    assert running_shadow(LOCAL_STAGE, None, FakeStack(None)) is None
    assert running_shadow(LOCAL_STAGE, None, FakeStack("http://127.0.0.1:9")) is None  # nothing answers there


def test_the_cli_hands_the_stack_to_the_commands() -> None:
    seen: list[object] = []
    probe = typer.Typer()

    @probe.command()
    def show(ctx: typer.Context) -> None:
        seen.append(local_stack(ctx))

    stack = FakeStack(None)
    app.add_typer(probe, name="probe")
    try:
        assert CliRunner().invoke(app, ["probe", "show"], obj=Handed(local_stack=stack)).exit_code == 0
        assert CliRunner().invoke(app, ["probe", "show"]).exit_code == 0
    finally:
        app.registered_groups.pop()
    assert seen == [stack, None]


def test_the_local_entry_point_provides_the_port() -> None:
    port: LocalStack = SimLocalStack()  # mypy checks the shape; here, that it answers
    url = port.api_url()
    assert url is None or url.startswith("http://127.0.0.1:")
