"""The one numeric type of the money path.

Every quantity that is summed (seconds, GB-seconds, meter values) is a
``decimal.Decimal`` quantized to microseconds. Binary floats drift when
thousands of 20 s ticks are added up; DynamoDB stores Numbers as decimals
natively (boto3 refuses floats), and Stripe takes meter values as decimal
strings, so Decimal is exact from the wire to Stripe.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

MICRO = Decimal("0.000001")
# Enough digits for a fleet-year of GB-seconds at microsecond resolution.
_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)


def exact(value: Decimal | int | str) -> Decimal:
    """Quantize to microseconds (the resolution of every stored quantity)."""
    # An explicit context instead of localcontext(): same result, a fraction of the cost per call.
    return Decimal(value).quantize(MICRO, context=_CONTEXT)


def wire(value: Decimal) -> str:
    """A meter value as Stripe wants it: a decimal string with 6 places."""
    return f"{exact(value):.6f}"
