"""What README.md and docs/ name, checked against the checkout: file paths, make targets, CLI commands and
their flags. A name the docs give that does not exist is one line of `problems()`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parents[2]
# Made by a run, never committed: named by the docs as what a run writes.
GENERATED = ("out/", ".venv/", ".local/", ".chalice/deployments", "bench/results/", ".mypy_cache")
CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
MAKE = re.compile(r"(?:^|[\s;&(])make\s+((?:[A-Z_]+=\S+\s+)*)([a-z][\w-]*)")
CLI = re.compile(r"(?:python -m chalicelib\.cli|(?:\.venv/bin/)?edge-billing|python -m cellkit)\b([^|;&#\n]*)")
MODULE = re.compile(r"python3? -m ([a-z_][\w.]*)")
PATH = re.compile(r"^\.?[\w.-]+(?:/[\w.-]+)*/?$")
STDLIB = {"pytest", "pip", "venv", "http.server", "json.tool", "mypy", "ruff", "coverage"}
FILE_SUFFIXES = (".py", ".md", ".json", ".txt", ".toml", ".ini", ".png", ".cfg", ".yml", ".yaml", ".sh")


@dataclass(frozen=True)
class Problem:
    doc: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.doc}: {self.kind} {self.name!r} does not exist"


def snippets(text: str) -> Iterator[str]:
    for block, span in CODE.findall(text):
        yield from (block.splitlines() if block else [span])


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w-]+):", text, re.M))


def top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir()} - {".git"}


def path_like(token: str, tops: set[str]) -> bool:
    """A file (a known suffix), or a path under one of the checkout's top-level entries; not a route
    (`/ingest`), a URL, an alternative (`pro/free`) or a key (`late/signal`)."""
    if token.startswith(("/", "http", "-")) or "://" in token or not PATH.match(token):
        return False
    if token.startswith(GENERATED):
        return False
    return token.endswith(FILE_SUFFIXES) or ("/" in token and token.split("/")[0] in tops)


def path_exists(token: str, files: list[str]) -> bool:
    clean = token.rstrip("/")
    if (ROOT / clean).exists():
        return True
    if "/" not in clean:  # a bare file name, as a table row names it beside its directory
        return any(f == clean or f.endswith("/" + clean) or f.startswith(clean + "/") for f in files)
    return any(f.endswith("/" + clean) or f.startswith(clean + "/") or ("/" + clean + "/") in ("/" + f)
               for f in files)


def cli_apps() -> dict[str, Any]:
    from cellkit.cli import app as cellkit_app
    from chalicelib.entrypoints.cli import app as edge_app

    return {"cellkit": typer.main.get_command(cellkit_app), "edge": typer.main.get_command(edge_app)}


def check_cli(command: Any, words: list[str]) -> list[str]:
    """What of `words` (after the program) names no command or no flag of it (typer's own click: duck-typed)."""
    path: list[str] = []
    i = 0
    while hasattr(command, "commands") and i < len(words) and words[i] in command.commands:
        command = command.commands[words[i]]
        path.append(words[i])
        i += 1
    bad: list[str] = []
    if hasattr(command, "commands") and i < len(words) and re.fullmatch(r"[a-z][\w-]*", words[i]):
        return [" ".join([*path, words[i]])]  # its flags cannot be judged
    opts = {o for p in command.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}
    for w in words[i:]:
        flag = w.strip("[]().,").split("=")[0]
        if flag.startswith("--") and re.fullmatch(r"--[a-z][\w-]*", flag) and flag not in opts:
            bad.append(" ".join([*path, flag]))
    return bad


def problems(doc: str, text: str, files: list[str] | None = None) -> list[Problem]:
    files = tracked() if files is None else files
    targets = make_targets()
    apps = cli_apps()
    tops = top_level()
    found: list[Problem] = []
    for snippet in snippets(text):
        for _, target in MAKE.findall(snippet):
            if target not in targets:
                found.append(Problem(doc, "make target", target))
        for m in CLI.finditer(snippet):
            program = apps["cellkit" if "cellkit" in m.group(0) else "edge"]
            for alternative in m.group(1).split(" / "):  # `run / status [--push] / stop`: each from the top
                found += [Problem(doc, "CLI command or flag", w) for w in check_cli(program, alternative.split())]
        for module in MODULE.findall(snippet):
            base = ROOT / module.replace(".", "/")
            if module not in STDLIB and not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
                found.append(Problem(doc, "module", module))
        for token in snippet.split():
            token = token.strip("`'\",;:()[]")
            if path_like(token, tops) and not path_exists(token, files):
                found.append(Problem(doc, "path", token))
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
