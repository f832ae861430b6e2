"""The layers hold: a test, not a convention. core is pure; services reach the world only through ports;
adapters never call services; entry points are the only ones that build and wire."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHALICELIB = ROOT / "chalicelib"

# What each layer may not import (a prefix match on the imported module).
FORBIDDEN = {
    "core": ("boto3", "botocore", "stripe", "aws_lambda_powertools", "chalice", "chalicelib.observability",
             "chalicelib.adapters", "chalicelib.services", "chalicelib.entrypoints", "chalicelib.bootstrap",
             "chalicelib.ports"),
    "services": ("boto3", "botocore", "stripe", "chalice", "chalicelib.adapters", "chalicelib.entrypoints"),
    "adapters": ("chalicelib.services", "chalicelib.entrypoints", "chalicelib.bootstrap"),
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def modules(layer: str) -> list[Path]:
    return sorted((CHALICELIB / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_what_it_must_not(layer: str) -> None:
    assert modules(layer), f"chalicelib/{layer} is empty"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(layer)
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert bad == []


@pytest.mark.parametrize("ports", ["ports.py", "credit_ports.py"])
def test_ports_depend_on_the_core_and_settings_only(ports: str) -> None:
    bad = [n for n in imports_of(CHALICELIB / ports)
           if n.startswith("chalicelib.") and not n.startswith(("chalicelib.core", "chalicelib.settings"))]
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import boto3\nfrom chalicelib.adapters.clock import SystemClock\n")
    names = imports_of(sample)
    assert "boto3" in names and "chalicelib.adapters.clock" in names


def test_app_only_wires() -> None:
    tree = ast.parse((ROOT / "app.py").read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    # The schedule handlers, each delegating in a single statement.
    assert [f.name for f in functions] == ["scheduled_rollup", "scheduled_credits"]
    assert all(len(f.body) == 1 for f in functions)
