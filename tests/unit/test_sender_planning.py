from __future__ import annotations

from decimal import Decimal

from chalicelib.adapters.stripe_gateway import classify
from chalicelib.core.meter_events import Outcome
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import OutboxRow
from chalicelib.services.sender import plan_send

NOW = 100 * 86400


def row(org: str, bucket: int, meter: str = "m1") -> OutboxRow:
    return OutboxRow(f"{org}:{bucket}:{meter}", org, bucket, bucket + 3600, meter, Decimal(1), "first", "pending")


def test_plan_send_groups_waits_and_expires() -> None:
    orgs = {"a": Org("a", stripe_customer_id="cus_a"), "b": Org("b")}
    rows = [
        row("a", NOW - 7200, "m2"),
        row("a", NOW - 7200),
        row("a", NOW - 10800),
        row("b", NOW - 7200),
        row("a", NOW - 36 * 86400),
    ]
    plan = plan_send(rows, orgs, NOW)
    assert [r.bucket_start for r, _ in plan.groups[("cus_a", "m1")]] == [NOW - 10800, NOW - 7200]
    assert len(plan.groups[("cus_a", "m2")]) == 1
    assert [r.org_id for r in plan.no_customer] == ["b"]
    assert [r.bucket_start for r in plan.too_old] == [NOW - 36 * 86400]


def test_classify_stripe_errors() -> None:
    import stripe

    dup = stripe.InvalidRequestError("An event already exists with identifier o:1:m.", param=None, http_status=400)
    assert classify(dup).outcome is Outcome.DUPLICATE
    other = stripe.InvalidRequestError("No such customer: cus_x", param="payload", http_status=400)
    assert classify(other).outcome is Outcome.REJECTED
    limited = stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "3"})
    assert (classify(limited).outcome, classify(limited).retry_after) == (Outcome.RATE_LIMITED, 3.0)
    assert classify(stripe.APIConnectionError("reset")).outcome is Outcome.RETRY
    assert classify(stripe.APIError("boom", http_status=500)).outcome is Outcome.RETRY
