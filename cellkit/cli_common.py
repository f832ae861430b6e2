"""What every ``python -m cellkit`` command shares: settings and the store opened or one clear line (exit 2),
and exactly one JSON document on stdout (logs go to stderr)."""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

import typer

from cellkit.adapters.stores import open_store
from cellkit.bootstrap import Cell, build
from cellkit.ports import CellStore
from cellkit.settings import CellSettings, SettingsError, load

USAGE = 2  # bad usage, settings or store: nothing was done


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, code: int = USAGE) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def settings_or_exit() -> CellSettings:
    try:
        return load()
    except SettingsError as exc:
        fail(str(exc))


def store_or_exit(settings: CellSettings) -> CellStore:
    try:
        return open_store(settings.CELL_DATABASE_URL)
    except Exception as exc:  # any driver's error (sqlite3, psycopg): one line naming the URL's kind, no trace
        kind = settings.CELL_DATABASE_URL.partition("://")[0] or "sqlite"
        fail(f"CELL_DATABASE_URL ({kind}) cannot be opened: {type(exc).__name__}: {exc}")


def cell_or_exit(settings: CellSettings, log: logging.Logger, parity: bool | None = None) -> Cell:
    store = store_or_exit(settings)
    try:
        return build(settings, log, store=store, parity=parity)
    except SettingsError as exc:  # a secret the configured edge needs (EVENT_SECRET)
        store.close()
        fail(str(exc))
