"""`python -m chalicelib.cli cutover ...`: the operator's commands for the seam (CONTRACT section 9).

Thin: parse, call `services/cutover_ops.py`, print (the steps' text is here). Exit codes (every subcommand): 0 all
good, 1 a check failed (the output names why), 2 operator error, 3 not yet
(retry later). `.chalice/config.json` is the source of truth for the flags:
`arm` and `rollback` write it and apply it (the local stage: restart the
local stack's app; AWS stages: print the `chalice deploy` to run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.console import Console
from rich.table import Table

from chalicelib.core.cutover.checks import EXIT_USAGE, Check, boundary_error
from chalicelib.core.cutover.verify import RUN_EVERY_SECONDS
from chalicelib.core.stage_config import CONFIG, read_stage, stages, with_flags
from chalicelib.entrypoints.cli_output import Refused, answer, handed, operator_errors, stage_services
from chalicelib.services import cutover_ops
from chalicelib.settings import SettingsError

console = Console(soft_wrap=True)  # an error line stays one line, whatever the terminal
cutover_app = typer.Typer(help="Move Pro billing from the cells to the edge (docs/runbook.md).",
                          no_args_is_help=True)
LOCAL_STAGE = "local"

StageOpt = typer.Option("dev", "--stage", help="Chalice stage in .chalice/config.json")
JsonOpt = typer.Option(False, "--json", help="Print JSON only")
ConfigOpt = typer.Option(CONFIG, "--config", help="The Chalice config (source of truth for flags)", hidden=True)
StaleOpt = typer.Option(1800, "--stale-after", help="A cell status older than this many seconds is not trusted")


def fail(message: str, code: int = EXIT_USAGE) -> Refused:
    return Refused(message, code)


def show(outcome: cutover_ops.CutoverOutcome, as_json: bool) -> None:
    if as_json:
        answer(outcome.body())
    else:
        table = Table("check", "ok", "why")
        for c in outcome.checks:
            mark = "[green]ok[/green]" if c.ok else ("[yellow]wait[/yellow]" if c.wait else "[red]FAIL[/red]")
            table.add_row(c.name, mark, c.why)
        console.print(table)
        extra = {k: v for k, v in outcome.data.items() if k not in ("cells",)}
        if extra:
            console.print_json(json.dumps(extra, default=str))
    raise typer.Exit(outcome.code)


class LocalStack(Protocol):
    """The local stack (moto, the Stripe emulator, `chalice local --stage local`), as the local entry point
    (`python -m sim.operator`) hands it to this CLI: the product never imports the simulator."""

    def api_url(self) -> str | None:
        """The running local app's URL; None when no stack runs."""
        ...

    def restart_app(self) -> str | None:
        """Restart only the app, so it reads the stage's flags again; its URL, or None when no stack runs."""
        ...


def local_stack(ctx: typer.Context) -> LocalStack | None:
    """The local stack this CLI was handed (`main(local_stack=...)`), if any."""
    return handed(ctx).local_stack


def running_shadow(stage: str, api_url: str | None, local: LocalStack | None) -> bool | None:
    """What the deployed app says (GET /health), when we know where it is."""
    import urllib.request

    if api_url is None and stage == LOCAL_STAGE and local is not None:
        api_url = local.api_url()
    if not api_url:
        return None
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=5) as res:
            return bool(json.load(res)["shadow"])
    except (OSError, ValueError, KeyError):
        return None


def apply(stage: str, config: Path, local: LocalStack | None) -> str:
    if stage == LOCAL_STAGE and config == CONFIG:
        url = local.restart_app() if local is not None else None
        if url is None:
            return "no local stack running: the flags apply when it starts (make stack-up)"
        return f"restarted the local app at {url} with the new flags"
    return f"now apply it: chalice deploy --stage {stage} (or the CloudFormation pipeline of docs/deploy.md)"


def write_flags(config: Path, stage: str, updates: dict[str, str], local: LocalStack | None) -> str:
    from chalicelib.settings import load_settings

    text = config.read_text()
    new = with_flags(text, stage, updates)
    try:
        load_settings(dict(read_stage(new, stage).env))
    except SettingsError as exc:
        raise fail(f"refusing to write flags that would not start: {exc}") from None
    replace_file(config, new)
    return apply(stage, config, local)


def replace_file(path: Path, text: str) -> None:
    """Write `path` so that a reader sees the old text or the new, never an empty or half-written file: the local
    stack's pollers re-read the config every loop while `arm` and `rollback` rewrite it (a torn read killed one).
    Written beside it, then renamed over it (atomic on one file system); the file keeps its mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plan_steps(stage: str, t: int) -> list[str]:
    """The operator's steps for a cutover at T, each with the command to run."""
    cli = f"python -m chalicelib.cli cutover {{}} --stage {stage}"
    return [
        f"1. {cli.format('preflight')}: catalog, one webhook endpoint, 24 h of clean parity per bucket, flags",
        f"2. drain every cell to T={t}: its billers bill every bucket before T and flush to Stripe",
        f"3. {cli.format(f'drain-check --at {t}')} until it exits 0",
        f"4. {cli.format(f'arm --at {t}')}: BILL_FROM={t}, SHADOW=false, applied",
        "5. every cell: PRO_BILLING_AUTHORITY=edge and restart (billers stop, creates need cap-tokens)",
        f"6. {cli.format('verify')} once the first live bucket has been rolled",
        f"rollback: {cli.format('rollback')}, cells back to PRO_BILLING_AUTHORITY=cell; within 24 h",
    ]


@cutover_app.command("preflight")
@operator_errors
def preflight(ctx: typer.Context, stage: str = StageOpt, as_json: bool = JsonOpt, config: Path = ConfigOpt,
              api_url: str = typer.Option(None, help="The deployed API, to compare its flags with the config"),
              soak_hours: int = typer.Option(24, help="Hours of clean parity required"),
              soak_seconds: int = typer.Option(None, help="The soak in seconds (overrides --soak-hours; for "
                                                          "stages with short buckets)")) -> None:
    """Catalog published with every key, exactly one enabled webhook endpoint (the edge's), every settled bucket of
    the soak (24 h) reported clean by every cell, flags consistent."""
    svc, flags = stage_services(ctx, config, stage)
    soak = soak_seconds if soak_seconds is not None else soak_hours * 3600
    shadow = running_shadow(stage, api_url, local_stack(ctx))
    show(cutover_ops.preflight(svc, svc.cutover_stripe(), flags, shadow, soak), as_json)


@cutover_app.command("plan")
@operator_errors
def plan(
    ctx: typer.Context,
    stage: str = StageOpt,
    as_json: bool = JsonOpt,
    config: Path = ConfigOpt,
    lead: int = typer.Option(None, help="Seconds from now T must at least be (default one bucket)"),
) -> None:
    """Propose T (the next quiet bucket boundary) with the steps and the flags per stage."""
    svc, flags = stage_services(ctx, config, stage)
    text = config.read_text()
    others = [read_stage(text, s) for s in stages(text) if s != stage]
    outcome = cutover_ops.plan(svc, flags, others, lead)
    t = outcome.data["T"]
    outcome.data = {"stage": stage, "T": t, "steps": plan_steps(stage, t), **outcome.data}
    if not as_json:
        console.print(f"T = {outcome.data['T']}")
        for step in outcome.data["steps"]:
            console.print(step)
    show(outcome, as_json)


@cutover_app.command("drain-check")
@operator_errors
def drain_check(
    ctx: typer.Context,
    at: int = typer.Option(..., "--at", help="T, unix seconds"),
    stage: str = StageOpt,
    as_json: bool = JsonOpt,
    config: Path = ConfigOpt,
    stale_after: int = StaleOpt,
) -> None:
    """Every cell billed through exactly T, nothing pending (exit 3: still draining, run it again; past T is exit 1:
    T is too early, the buckets between would be billed twice)."""
    svc, _ = stage_services(ctx, config, stage)
    error = boundary_error(at, svc.settings.BUCKET_SECONDS)
    if error:
        raise fail(error)
    show(cutover_ops.drain(svc, at, stale_after), as_json)


@cutover_app.command("arm")
@operator_errors
def arm(
    ctx: typer.Context,
    at: int = typer.Option(..., "--at", help="T, unix seconds, a bucket boundary"),
    stage: str = StageOpt,
    as_json: bool = JsonOpt,
    config: Path = ConfigOpt,
) -> None:
    """Write BILL_FROM=T and SHADOW=false for the stage, and apply it."""
    svc, _ = stage_services(ctx, config, stage)
    error = boundary_error(at, svc.settings.BUCKET_SECONDS)
    if error:
        raise fail(f"refusing to arm: {error}")
    applied = write_flags(config, stage, {"BILL_FROM": str(at), "SHADOW": "false"}, local_stack(ctx))
    checks = [Check("armed", True, f"stage {stage}: BILL_FROM={at}, SHADOW=false written to {config.name}"),
              Check("applied", True, applied)]
    show(cutover_ops.CutoverOutcome("arm", checks, {"stage": stage, "T": at}), as_json)


@cutover_app.command("verify")
@operator_errors
def verify(ctx: typer.Context, stage: str = StageOpt, as_json: bool = JsonOpt, config: Path = ConfigOpt,
           at: int = typer.Option(None, "--at", help="T (default: the stage's BILL_FROM)"),
           stale_after: int = StaleOpt,
           run_every: int = typer.Option(RUN_EVERY_SECONDS, help="Seconds between rollup runs")) -> None:
    """Meter events flowing, every cell stood down, no bucket around T billed twice or by nobody."""
    svc, flags = stage_services(ctx, config, stage)
    t = at if at is not None else int(flags.value("BILL_FROM", "0"))
    show(cutover_ops.verify(svc, svc.seam(), flags, t, stale_after, run_every), as_json)


@cutover_app.command("rollback")
@operator_errors
def rollback(
    ctx: typer.Context,
    stage: str = StageOpt,
    as_json: bool = JsonOpt,
    config: Path = ConfigOpt,
    at: int = typer.Option(None, "--at", help="T (default: the stage's BILL_FROM)"),
) -> None:
    """SHADOW=true again; cancel (within 24 h) or list every meter event the edge sent for a bucket a cell billed."""
    svc, flags = stage_services(ctx, config, stage)
    t = at if at is not None else int(flags.value("BILL_FROM", "0"))
    applied = write_flags(config, stage, {"SHADOW": "true"}, local_stack(ctx))
    outcome = cutover_ops.rollback(svc, svc.seam(), svc.cutover_stripe(), t)
    outcome.checks.insert(1, Check("applied", True, applied))
    show(outcome, as_json)


def register(app: Any) -> None:
    app.add_typer(cutover_app, name="cutover")
