"""What every operator command promises about its output (CONTRACT: `--json` = exactly one JSON document on
stdout, logs on stderr), and the stage's flags as the source of truth for the settings a command runs with.

`answering(as_json)` wraps a command: with `--json`, whatever the command's code or its libraries print
(Powertools' log lines, an EMF metric, a restart's progress) goes to stderr, and the one document goes to
the stdout saved here (`answer`); a failure is `{"error": ...}` with its exit code, never a bare line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from chalicelib.bootstrap import Container, from_environment
from chalicelib.core.cutover.checks import StageFlags
from chalicelib.core.stage_config import StageConfigError, read_stage
from chalicelib.observability import logger
from chalicelib.ports import StoreRejected, StoreUnavailable
from chalicelib.settings import SettingsError, load_settings
from chalicelib.stripe_ports import GatewayError

if TYPE_CHECKING:
    from chalicelib.entrypoints.cli_cutover import LocalStack

P = ParamSpec("P")
T = TypeVar("T")
_ANSWER: ContextVar[TextIO | None] = ContextVar("answer_stream", default=None)
errors = Console(stderr=True, soft_wrap=True)


@dataclass
class Handed:
    """What the CLI's caller hands it, in the root context's `obj`: a container (a test's; else one is built from
    the environment on first use) and the local stack (`python -m sim.operator`; else none)."""

    container: Container | None = None
    local_stack: LocalStack | None = None


def handed(ctx: typer.Context) -> Handed:
    root = ctx.find_root()
    if not isinstance(root.obj, Handed):
        root.obj = Handed()
    return root.obj


def container(ctx: typer.Context) -> Container:
    """This command's container: the one its caller handed the CLI, else built from the environment on first use
    (so `--help` needs no AWS region) and kept for the rest of the command. No module global: one per command."""
    given = handed(ctx)
    if given.container is None:
        given.container = from_environment()
    return given.container


class Refused(Exception):
    """An operator error (or a check the command cannot pass): one message, one exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test runner swaps it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def logs_to_stderr() -> Iterator[None]:
    """stdout is the command's answer: its log lines go to stderr (the Lambdas keep stdout, CloudWatch's)."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(_Stderr())
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)


@contextmanager
def answering(as_json: bool) -> Iterator[None]:
    """Run a command's body; with --json everything it prints goes to stderr but `answer(...)`, and a Refused
    becomes `{"error": ...}` on stdout with its code."""
    out = sys.stdout
    token = _ANSWER.set(out)
    try:
        with logs_to_stderr(), (redirect_stdout(sys.stderr) if as_json else _nothing()):
            yield
    except Refused as exc:
        if as_json:
            out.write(json.dumps({"error": exc.message, "exit_code": exc.code}) + "\n")
        else:
            errors.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(exc.code) from None
    finally:
        _ANSWER.reset(token)


# What an operator can cause or fix (a bad flag or config, a store down or refusing a write, Stripe failing,
# a file it cannot read): one line and exit 2, never a traceback. Anything else is a bug and keeps its traceback.
OPERATOR_FAILURES = (SettingsError, StoreUnavailable, StoreRejected, StageConfigError, OSError, BotoCoreError,
                     ClientError)


def operator_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """The one error decorator of every operator command (edge-billing's own, cutover, status, meter-errors,
    credits): inside `answering` (its --json read from the `as_json` or `json_out` argument), an operator's
    failure is one clear line on stderr, or `{"error", "exit_code"}` as the only document on stdout."""

    @wraps(fn)
    def command(*args: P.args, **kwargs: P.kwargs) -> T:
        with answering(bool(kwargs.get("as_json") or kwargs.get("json_out"))):
            try:
                return fn(*args, **kwargs)
            except GatewayError as exc:
                raise Refused(f"Stripe answered {exc.status}: {exc}") from None
            except OPERATOR_FAILURES as exc:
                raise Refused(str(exc)) from None

    return command


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def answer(body: Any) -> None:
    """The command's one JSON document, on the stdout the command started with."""
    stream = _ANSWER.get() or sys.stdout
    stream.write(json.dumps(body, default=str, indent=2) + "\n")


def stage_services(ctx: typer.Context, config: Path, stage: str) -> tuple[Container, StageFlags]:
    """The services with the stage's flags (the source of truth: `.chalice/config.json`, which `arm` writes) over
    the environment's, so a command behaves the same whether or not the shell exported them; the environment
    still says where the tables and Stripe are, and must point at the stage's tables."""
    try:
        flags = read_stage(config.read_text(), stage)
    except (OSError, StageConfigError) as exc:
        raise Refused(str(exc)) from None
    base = container(ctx)
    prefix = flags.value("TABLE_PREFIX")
    if prefix and prefix != base.settings.TABLE_PREFIX:
        raise Refused(f"the environment points at tables {base.settings.TABLE_PREFIX}-* but stage {stage} uses "
                      f"{prefix}-*: export that stage's TABLE_PREFIX (and its endpoints)")
    return replace(base, settings=load_settings(dict(os.environ) | dict(flags.env))), flags
