"""Limits and checks every untrusted input passes before anything else reads it.

Pure (no boto3, no logger). Each limit is stated once here, quoted by the
README's contract notes and by the error messages, so a caller that hits one
learns which and why instead of getting an accidental 500 from deep inside a
parser or a store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeGuard

# JSON bodies nested deeper than this are malformed as a whole (a real envelope
# is 3 levels deep, a Stripe event under 10). Python's parser and encoder
# recurse, so without a limit ~1,000 levels is a RecursionError (a 500).
MAX_JSON_DEPTH = 32
# Ids (envelope, org, sandbox, worker, cell, Stripe objects) in characters. At
# 4 UTF-8 bytes per character this stays below DynamoDB's 1,024-byte sort-key
# and 2,048-byte partition-key limits, so no id can make a write fail for good.
MAX_ID_LENGTH = 200
# Stripe ids are at most 255 characters (customer, subscription, checkout session).
MAX_STRIPE_ID_LENGTH = 255
# Integers longer than this in an ingest body are kept as Decimal, so a
# 5,000-digit number fails one envelope's validation instead of the whole parse.
MAX_INT_DIGITS = 30


class JsonBodyError(ValueError):
    """The body is not usable JSON as a whole (answered 400)."""


def printable(value: str, name: str, max_length: int = MAX_ID_LENGTH, ascii_only: bool = False) -> str:
    """An id as the edge stores and logs it: 1..max_length printable characters.

    `str.isprintable` is False for control characters (NUL, newline, DEL, C1),
    lone surrogates (which cannot be encoded as UTF-8, so no store or log can
    take them), line/paragraph separators and invisible format characters.
    """
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} is longer than {max_length} characters")
    if not value.isprintable():
        raise ValueError(f"{name} must be printable text (no control characters or lone surrogates)")
    if ascii_only and not value.isascii():
        raise ValueError(f"{name} must be printable ASCII")
    return value


def is_printable_id(value: object, max_length: int = MAX_ID_LENGTH, ascii_only: bool = False) -> TypeGuard[str]:
    """`ascii_only` for ids that end up in HTTP headers (Stripe idempotency keys are built from
    org ids and Stripe ids): a header takes Latin-1 at most, and Stripe's own ids are ASCII."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and value.isprintable()
        and (value.isascii() or not ascii_only)
    )


def _int_or_decimal(text: str) -> int | Decimal:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else Decimal(text)


def deeper_than(data: Any, limit: int) -> bool:
    """Whether any container in `data` sits more than `limit` levels down (iterative: no recursion)."""
    if not isinstance(data, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json(
    body: bytes | str,
    max_depth: int = MAX_JSON_DEPTH,
    parse_float: Callable[[str], Any] | None = None,
    big_ints: bool = False,
) -> Any:
    """Parse a request body; raise JsonBodyError for invalid JSON or nesting beyond `max_depth`.

    `big_ints`: integers longer than MAX_INT_DIGITS become Decimals instead of failing the parse.
    """
    try:
        data = json.loads(
            body,
            parse_float=parse_float,
            parse_constant=Decimal if parse_float is Decimal else None,
            parse_int=_int_or_decimal if big_ints else None,
        )
    except RecursionError:
        raise JsonBodyError(f"body is nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonBodyError(f"body is not valid JSON: {exc}") from None
    if deeper_than(data, max_depth):
        raise JsonBodyError(f"body is nested deeper than {max_depth} levels")
    return data
