"""A tick's cost is bounded: beyond it the envelope is quarantined, never a 500 for the whole batch."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from chalicelib.core.envelopes import MAX_TICK_COST_CENTS, UsageTick


def test_a_cost_at_the_bound_is_kept_and_micro_cents_stay_exact() -> None:
    from chalicelib.core.credits import to_micro

    tick = UsageTick(interval_s=Decimal(20), cost_cents=Decimal(MAX_TICK_COST_CENTS))
    assert to_micro(tick.cost_cents) == MAX_TICK_COST_CENTS * 1_000_000


@pytest.mark.parametrize("cost", [10**22, MAX_TICK_COST_CENTS + 1, -1])
def test_a_cost_beyond_the_bound_or_negative_is_invalid(cost: int) -> None:
    with pytest.raises(ValidationError, match="cost_cents"):
        UsageTick(interval_s=Decimal(20), cost_cents=cost)
