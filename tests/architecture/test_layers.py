"""The layers hold: a test, not a convention, over both products (the edge's `chalicelib` and the cell
kit's `cellkit`). core is pure and reads no settings; services reach the world only through ports;
adapters never call services; only the composition roots (`chalicelib/bootstrap.py`, `cellkit/bootstrap.py`)
and the entry points wire. Neither product imports the simulator, the benches, the Stripe emulator or the
tests. Each rule is checked against a mutant: a module that breaks it must be reported."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ("chalicelib", "cellkit")
# What no module of a product may import: the development tree around it.
NOT_PRODUCT = ("sim", "bench", "stripe_emulator", "tests")

# (package, layer) -> what its modules may not import (a prefix match on the imported module).
LAYERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("chalicelib", "core"): ("boto3", "botocore", "stripe", "aws_lambda_powertools", "chalice",
                             "chalicelib.observability", "chalicelib.settings", "chalicelib.adapters",
                             "chalicelib.services", "chalicelib.entrypoints", "chalicelib.bootstrap",
                             "chalicelib.ports"),
    ("chalicelib", "services"): ("boto3", "botocore", "stripe", "chalice", "chalicelib.adapters",
                                 "chalicelib.entrypoints", "chalicelib.bootstrap"),
    ("chalicelib", "adapters"): ("chalicelib.services", "chalicelib.entrypoints", "chalicelib.bootstrap"),
    # Entry points only translate: every adapter (and the SDKs behind them) reaches them through bootstrap.py.
    # botocore stays allowed: a command names its exceptions to print one line instead of a traceback.
    ("chalicelib", "entrypoints"): ("boto3", "stripe", "chalicelib.adapters"),
    ("cellkit", "core"): ("logging", "sqlite3", "psycopg", "stripe", "urllib", "http", "socket",
                          "cellkit.settings", "cellkit.ports", "cellkit.adapters", "cellkit.services",
                          "cellkit.bootstrap", "cellkit.cli"),
    ("cellkit", "services"): ("sqlite3", "psycopg", "stripe", "urllib", "http", "socket", "cellkit.adapters",
                              "cellkit.bootstrap", "cellkit.cli"),
    ("cellkit", "adapters"): ("cellkit.services", "cellkit.bootstrap", "cellkit.cli"),
}
# The ports (the services' vocabulary: ports.py, credit_ports.py) lean on the core only (and, at the edge,
# the settings' types).
PORTS_MAY_IMPORT = {"chalicelib": ("chalicelib.core", "chalicelib.settings"), "cellkit": ("cellkit.core",)}
# The CLIs and the HTTP routes are two entry points side by side: what both need (an org's body) lives in a
# module of its own, never one importing the other.
CLI_MODULES = "chalicelib/entrypoints/cli*.py"
NOT_FROM_CLI = ("chalicelib.entrypoints.api",)
APP_NOT = ("boto3", "stripe", "chalicelib.adapters", "chalicelib.services", "chalicelib.core")
# The two products stand apart: a cell runs without the edge's code, the edge without the kit.
OTHER_PRODUCT = {"chalicelib": "cellkit", "cellkit": "chalicelib"}


def import_statements(path: Path) -> list[list[str]]:
    """Per import statement, at any depth (a lazy import inside a function counts too), the modules it may
    name: `from a.b import c` names a.b and a.b.c (c may be a module)."""
    found: list[list[str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [[a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return found


def imports_of(path: Path) -> list[str]:
    return [name for statement in import_statements(path) for name in statement]


def hits(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def wrong_imports(root: Path, path: Path, is_wrong: Callable[[str], bool], rule: str) -> list[str]:
    """One line per import statement of ``path`` that names a module ``is_wrong`` refuses."""
    found = []
    for statement in import_statements(path):
        wrong = [name for name in statement if is_wrong(name)]
        if wrong:
            found.append(f"{path.relative_to(root)} imports {wrong[0]} ({rule})")
    return found


def violations(root: Path) -> list[str]:
    """Every wrong-way import under ``root`` (the repository, or a mutant's tree)."""
    bad: list[str] = []
    for (package, layer), forbidden in LAYERS.items():
        for path in sorted((root / package / layer).rglob("*.py")):
            bad += wrong_imports(root, path, lambda n, f=forbidden: hits(n, f), f"{package}/{layer}")
    for package in PRODUCTS:
        for path in sorted((root / package).rglob("*.py")):
            bad += wrong_imports(root, path, lambda n: hits(n, NOT_PRODUCT), "product")
            bad += wrong_imports(root, path, lambda n, p=package: hits(n, (OTHER_PRODUCT[p],)), "products apart")
        for ports in sorted((root / package).glob("*ports.py")):  # ports.py, and the ports of one concept
            bad += wrong_imports(root, ports, lambda n, p=package: n.startswith(p + ".") and not n.startswith(
                PORTS_MAY_IMPORT[p]), "ports")
    for path in sorted(root.glob(CLI_MODULES)):
        bad += wrong_imports(root, path, lambda n: hits(n, NOT_FROM_CLI), "cli apart from http")
    if (root / "app.py").exists():
        bad += wrong_imports(root, root / "app.py", lambda n: hits(n, NOT_PRODUCT), "product")
        # app.py wires: the container from bootstrap.py, the rest from the entry points.
        bad += wrong_imports(root, root / "app.py", lambda n: hits(n, APP_NOT), "app wires")
    return bad


@pytest.mark.parametrize("package,layer", sorted(LAYERS))
def test_every_layer_has_modules(package: str, layer: str) -> None:
    assert list((ROOT / package / layer).rglob("*.py")), f"{package}/{layer} is empty: the rule guards nothing"


def test_no_module_imports_what_it_must_not() -> None:
    assert violations(ROOT) == []


# One mutant per rule: a module placed where the rule applies, importing what it forbids.
MUTANTS = [
    *[(f"{package}/{layer}/mutant.py", f"import {forbidden[0]}\n", f"{package}/{layer}")
      for (package, layer), forbidden in LAYERS.items()],
    ("chalicelib/core/mutant.py", "from chalicelib.settings import Settings\n", "chalicelib/core"),
    ("cellkit/core/mutant.py", "from cellkit.settings import CellSettings\n", "cellkit/core"),
    ("chalicelib/services/mutant.py", "from chalicelib.adapters.dynamodb.store import DynamoStore\n",
     "chalicelib/services"),
    ("cellkit/services/mutant.py", "from cellkit.adapters.http import EdgeClient\n", "cellkit/services"),
    ("cellkit/services/mutant.py", "from cellkit.bootstrap import build\n", "cellkit/services"),
    ("chalicelib/adapters/mutant.py", "from chalicelib.services import ingest\n", "chalicelib/adapters"),
    ("chalicelib/entrypoints/api/mutant.py", "from chalicelib.adapters.dynamodb.store import DynamoStore\n",
     "chalicelib/entrypoints"),
    ("chalicelib/entrypoints/cli_mutant.py", "def lazy() -> None:\n    from chalicelib.entrypoints.api.internal_api "
     "import bp\n", "cli apart from http"),
    *[(f"{package}/entrypoints/mutant.py" if package == "chalicelib" else f"{package}/cli.py",
       f"def lazy() -> None:\n    from {other}.x import y\n", "product")
      for package in PRODUCTS for other in NOT_PRODUCT],
    ("app.py", "import sim.stack\n", "product"),
    ("app.py", "from chalicelib.adapters.dynamodb.store import DynamoStore\n", "app wires"),
    ("chalicelib/services/mutant.py", "import cellkit.core.usage\n", "products apart"),
    ("cellkit/adapters/mutant.py", "from chalicelib.core import pricing\n", "products apart"),
    ("chalicelib/ports.py", "from chalicelib.adapters.clock import SystemClock\n", "ports"),
    ("cellkit/ports.py", "from cellkit.adapters.http import EdgeClient\n", "ports"),
]


def imports_in(source: str) -> str:
    return next(w for line in source.splitlines() for w in line.split()[1:2] if line.strip().startswith(
        ("import", "from")))


@pytest.mark.parametrize("where,source,rule", MUTANTS, ids=[f"{m[0]}:{imports_in(m[1])}" for m in MUTANTS])
def test_each_rule_reports_its_mutant(tmp_path: Path, where: str, source: str, rule: str) -> None:
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(where) and found[0].endswith(f"({rule})"), found


def test_app_only_wires() -> None:
    tree = ast.parse((ROOT / "app.py").read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    # The schedule handlers and the queues' workers, each delegating in a single statement.
    assert [f.name for f in functions] == ["scheduled_rollup", "scheduled_credits", "rollup_worker_handler",
                                           "send_worker_handler"]
    assert all(len(f.body) == 1 for f in functions)


# No module global for wiring: a container is built by whoever starts the product (app.py, once per app; the
# CLI, per command; tests) and handed on, never at a module's import in the product.
BUILDS = ("build", "from_environment", "Container", "make_app")


def module_level_builds(path: Path) -> list[str]:
    """Every call of a container builder in a statement that runs at import (not inside a def or class)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
            if name in BUILDS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    return found


def test_no_product_module_builds_a_container_at_import() -> None:
    built = [hit for path in sorted((ROOT / "chalicelib").rglob("*.py")) for hit in module_level_builds(path)]
    assert built == []
    assert module_level_builds(ROOT / "app.py") == ["app.py:13 make_app()", "app.py:13 from_environment()"]
