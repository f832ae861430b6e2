"""The one template `chalice package --merge-template` takes: infra/template.json in the stage's capacity
mode (infra/capacity.py), then infra/api.json, infra/rollup.json and infra/send.json over it.

template.json is also deployed on its own (the tables' stack, docs/deploy.md), so it cannot name
Chalice's `RestAPI`; api.json (API Gateway's own 4xx/5xx answers as {"error": ...}) can only be
merged into Chalice's template; so can rollup.json (the rollup's task queue, its dead-letter queue and
their alarms, the worker's partial batch failures, the queue's URL for the functions that send to it);
so can send.json (the same for the send's FIFO queue and its worker).
Chalice accepts one merge template, hence this deep merge.
Usage: python -m infra.merge [--stage STAGE] OUT
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from chalice.package import TemplateDeepMerger

from infra.capacity import infra_stack

INFRA = Path(__file__).resolve().parent


def deep_merge(base: Any, over: Any) -> Any:
    """`over` wins, objects merged key by key: Chalice's own merger, the one `--merge-template` uses."""
    return TemplateDeepMerger().merge(over, base)


def merge_template(stage: str = "dev", mode: str | None = None) -> dict[str, Any]:
    base = infra_stack(stage, mode)
    for name in ("api.json", "rollup.json", "send.json"):
        base = deep_merge(base, json.loads((INFRA / name).read_text()))
    merged: dict[str, Any] = base
    return merged


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[0] != "--stage"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    stage = argv[1] if len(argv) == 3 else "dev"
    Path(argv[-1]).write_text(json.dumps(merge_template(stage), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
