"""The HTTP transport (stdlib urllib: no extra dependency on a cell) and the signed edge client."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from cellkit.core.signing import body_headers, get_headers
from cellkit.ports import Clock, HttpResponse, HttpTransport, MalformedResponse, TransportError


class UrllibTransport:
    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResponse(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read() or b""
            except (http.client.HTTPException, OSError) as cut:  # the error's own body cut short
                raise MalformedResponse(f"{method} {url}: {exc.code} with a broken body: {cut!r}") from None
            return HttpResponse(exc.code, body, dict(exc.headers or {}))
        except http.client.RemoteDisconnected as exc:
            # Closed before any answer (a BadStatusLine subclass, and a ConnectionResetError): plain network.
            raise TransportError(f"{method} {url}: {exc!r}") from None
        except http.client.HTTPException as exc:
            # IncompleteRead, BadStatusLine, LineTooLong...: an answer arrived and is not HTTP.
            raise MalformedResponse(f"{method} {url}: malformed answer: {exc!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise TransportError(f"{method} {url}: {exc}") from None


class EdgeClient:
    """Signs every request per CONTRACT section 1 and talks to one edge base URL.

    ``base_url`` may carry an API Gateway stage prefix (``https://x/api``): the
    signature covers the route path only (``/internal/...``), as the edge sees it.
    """

    def __init__(
        self, base_url: str, secret: str, cell_id: str, transport: HttpTransport, clock: Clock, timeout: float = 10.0
    ) -> None:
        self.base = base_url.rstrip("/")
        self.secret, self.cell_id, self.transport, self.clock, self.timeout = secret, cell_id, transport, clock, timeout

    def _now_s(self) -> int:
        return self.clock.now_us() // 1_000_000

    def send_body(self, method: str, path: str, body: bytes, extra: Mapping[str, str] | None = None) -> HttpResponse:
        headers = {"Content-Type": "application/json", "X-Cell-Id": self.cell_id,
                   **body_headers(self.secret, self._now_s(), body), **(extra or {})}
        return self.transport.request(method, self.base + path, body, headers, self.timeout)

    def get(self, path: str, params: list[tuple[str, str]]) -> HttpResponse:
        query = urlencode(params)
        headers = {"X-Cell-Id": self.cell_id, **get_headers(self.secret, self._now_s(), path, query)}
        return self.transport.request("GET", self.base + path + ("?" + query if query else ""), None, headers,
                                      self.timeout)

    def put_json(self, path: str, payload: Any) -> HttpResponse:
        return self.send_body("PUT", path, json.dumps(payload, separators=(",", ":")).encode())

    def post_json(self, path: str, payload: Any) -> HttpResponse:
        return self.send_body("POST", path, json.dumps(payload, separators=(",", ":")).encode())
