from __future__ import annotations

import json
import logging

from cellkit.adapters.logs import JsonFormatter


def test_one_json_object_per_line_with_the_ids_on_top() -> None:
    record = logging.LogRecord("cellkit", logging.ERROR, __file__, 1, "forward_batch_set_aside", None, None)
    for key, value in {"cell_id": "cell-a", "org_id": "o1", "sandbox_id": "s1", "alarm": True}.items():
        setattr(record, key, value)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["event"] == "forward_batch_set_aside" and body["level"] == "ERROR"
    assert (body["cell_id"], body["org_id"], body["sandbox_id"], body["alarm"]) == ("cell-a", "o1", "s1", True)
