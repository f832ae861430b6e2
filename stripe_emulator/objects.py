"""What every part of the emulator answers with: Stripe's error shape, its ids, its lists."""

from __future__ import annotations

import secrets
from typing import Any


class StripeFailure(Exception):
    """An answer in Stripe's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
        return {"error": err}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def listing(url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False, "url": url}
