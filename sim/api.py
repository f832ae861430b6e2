"""A cell's view of the edge: HMAC-signed HTTP calls, exactly as the cells' forwarder makes them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from chalicelib.core.hmac_auth import sign_body, sign_get


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass(frozen=True)
class EdgeClient:
    base_url: str
    secret: str
    cell_id: str = "cell-sim"

    def post(self, path: str, body: Any, method: str = "POST") -> Answer:
        raw = json.dumps(body).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Timestamp": str(now),
            "X-Signature": sign_body(self.secret, now, raw),
            "X-Cell-Id": self.cell_id,
        }
        return self._send(urllib.request.Request(self.base_url + path, data=raw, headers=headers, method=method))

    def get(self, path: str, params: dict[str, Any]) -> Answer:
        query = urlencode(params)
        now = int(time.time())
        headers = {"X-Timestamp": str(now), "X-Signature": sign_get(self.secret, now, path, query)}
        return self._send(urllib.request.Request(f"{self.base_url}{path}?{query}", headers=headers))

    @staticmethod
    def _send(request: urllib.request.Request) -> Answer:
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return Answer(response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, json.loads(exc.read() or b"null"))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def stripe_signature(payload: bytes, secret: str, at: int | None = None) -> str:
    """A `Stripe-Signature` header as Stripe computes it (HMAC-SHA256 over "t.payload")."""
    ts = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def post_webhook(base_url: str, secret: str, event: dict[str, Any]) -> Answer:
    payload = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(payload, secret)}
    request = urllib.request.Request(base_url + "/webhooks/stripe", data=payload, headers=headers, method="POST")
    return EdgeClient._send(request)
