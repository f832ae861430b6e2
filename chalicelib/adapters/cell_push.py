"""Signed pushes to a cell's control plane (CONTRACT sections 1 and 10), over stdlib urllib.

One attempt per call with a short timeout: the retries and their backoff are the push service's
(chalicelib/services/halt_push.py), recorded in the store, so a Lambda that dies mid-round loses nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from chalicelib.core.hmac_auth import sign_body
from chalicelib.credit_ports import CellPusher


class HttpCellPusher(CellPusher):
    def __init__(self, secret: str, now: Callable[[], int], timeout: float = 5.0) -> None:
        self.secret, self.now, self.timeout = secret, now, timeout

    def push(self, base_url: str, path: str, body: dict[str, Any]) -> bool:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        ts = str(self.now())
        request = urllib.request.Request(
            base_url.rstrip("/") + path, data=raw, method="POST",
            headers={"Content-Type": "application/json", "X-Timestamp": ts,
                     "X-Signature": sign_body(self.secret, ts, raw)},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return 200 <= answer.status < 300
        except urllib.error.HTTPError:
            return False
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError):
            return False
