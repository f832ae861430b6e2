"""stripe-python's errors stop at the adapters: a call that fails raises the ports' GatewayError instead,
with Stripe's status and message, so services and entry points never import stripe to catch one."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import stripe

from chalicelib.stripe_ports import GatewayError

P = ParamSpec("P")
T = TypeVar("T")


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a gateway call; a StripeError becomes a GatewayError (the original chained, for the logs)."""

    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise GatewayError(exc.user_message or str(exc) or type(exc).__name__, exc.http_status) from exc

    return call
