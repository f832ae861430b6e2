"""Plan: T, the next quiet bucket boundary, and the flags each step of the cutover sets per stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from chalicelib.core.cutover.checks import StageFlags

SHOWN_FLAGS = ("SHADOW", "BILL_FROM", "BUCKET_SECONDS")


def propose_t(now: int, bucket: int, lead: int, usage_by_bucket: Mapping[int, Decimal],
              horizon: int = 86400) -> int:
    """The next quiet boundary: among boundaries at least `lead` ahead (within `horizon`), the one whose
    two neighbouring buckets a day earlier carried the least usage; the earliest on a tie."""
    first = -(-(now + lead) // bucket) * bucket
    candidates = range(first, first + max(bucket, min(horizon, 48 * bucket)), bucket)

    def load(t: int) -> Decimal:
        day_before = t - 86400
        return usage_by_bucket.get(day_before - bucket, Decimal(0)) + usage_by_bucket.get(day_before, Decimal(0))

    return min(candidates, key=lambda t: (load(t), t))


def plan_flags(flags: StageFlags, t: int, others: Sequence[StageFlags] = ()) -> dict[str, Any]:
    """The flags now, after `arm` and after `rollback`, per stage (the other stages stay as they are), and
    the cells' authority."""
    stage = flags.stage
    now_flags = {k: flags.value(k) for k in SHOWN_FLAGS}
    return {
        "flags": {
            stage: {"now": now_flags,
                    "after_arm": now_flags | {"SHADOW": "false", "BILL_FROM": str(t)},
                    "after_rollback": now_flags | {"SHADOW": "true", "BILL_FROM": str(t)}},
            **{o.stage: {"now": {k: o.value(k) for k in SHOWN_FLAGS}, "unchanged": True}
               for o in others if o.stage != stage},
        },
        "cells": {"PRO_BILLING_AUTHORITY": {"now": "cell", "after_switch": "edge", "after_rollback": "cell"}},
    }
