"""The one template `chalice package --merge-template` takes: infra/template.json with infra/api.json over it.

template.json is also deployed on its own (the tables' stack, docs/deploy.md), so it cannot name
Chalice's `RestAPI`; api.json (API Gateway's own 4xx/5xx answers as {"error": ...}) can only be
merged into Chalice's template. Chalice accepts one merge template, hence this deep merge.
Usage: python -m infra.merge OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chalice.package import TemplateDeepMerger

INFRA = Path(__file__).resolve().parent


def deep_merge(base: Any, over: Any) -> Any:
    """`over` wins, objects merged key by key: Chalice's own merger, the one `--merge-template` uses."""
    return TemplateDeepMerger().merge(over, base)


def merge_template() -> dict[str, Any]:
    base = json.loads((INFRA / "template.json").read_text())
    merged: dict[str, Any] = deep_merge(base, json.loads((INFRA / "api.json").read_text()))
    return merged


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    Path(argv[0]).write_text(json.dumps(merge_template(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
