"""Structured logs: one JSON object per line, with the cell/org/sandbox ids as top-level keys."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
            "ts": round(record.created, 6),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def get_logger(name: str = "cellkit") -> logging.Logger:
    return logging.getLogger(name)


def configure(level: str = "INFO") -> None:
    """For the entry point: JSON lines on stderr. Library code never configures logging itself."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("cellkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
