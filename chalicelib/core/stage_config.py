""".chalice/config.json as the source of truth for a stage's flags: read it, and rewrite it with new flags.

Pure text in, text out: the file's layout (2-space JSON, key order, final
newline) is kept, so a flag change is a one-line diff a reviewer can read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.core.cutover.checks import StageFlags

# Where `chalice` itself reads it: the project directory, which is the one the operator runs from (`--config`
# points elsewhere). Never relative to this module: installed with pip, the package is not in the project.
CONFIG = Path(".chalice") / "config.json"


class StageConfigError(ValueError):
    """The config has no such stage, or is not the JSON Chalice reads."""


def _stage(config: dict[str, Any], stage: str) -> dict[str, Any]:
    stages = config.get("stages") or {}
    if stage not in stages:
        raise StageConfigError(f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    found: dict[str, Any] = stages[stage]
    return found


def read_stage(text: str, stage: str) -> StageFlags:
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise StageConfigError(f".chalice/config.json is not JSON: {exc}") from None
    body = _stage(config, stage)
    env = {k: str(v) for k, v in (config.get("environment_variables") or {}).items()}
    env |= {k: str(v) for k, v in (body.get("environment_variables") or {}).items()}
    functions = {
        name: {k: str(v) for k, v in (fn.get("environment_variables") or {}).items()}
        for name, fn in (body.get("lambda_functions") or {}).items()
    }
    return StageFlags(stage, env, functions)


def stages(text: str) -> list[str]:
    return sorted((json.loads(text).get("stages") or {}).keys())


def with_flags(text: str, stage: str, updates: dict[str, str]) -> str:
    """The config with `updates` set in the stage's environment (and in any Lambda override of them,
    so no function keeps an old value)."""
    config = json.loads(text)
    body = _stage(config, stage)
    body.setdefault("environment_variables", {}).update(updates)
    for fn in (body.get("lambda_functions") or {}).values():
        overrides = fn.get("environment_variables") or {}
        for key in updates.keys() & overrides.keys():
            overrides[key] = updates[key]
    return json.dumps(config, indent=2) + "\n"
