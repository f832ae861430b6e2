"""Two hours of simulated ticks through ingest, rollup and send against the Stripe emulator.

The emulator's per-customer meter totals must equal the usage computed
independently from the ticks the fleet sent: nothing billed twice, nothing lost.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import stripe

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.stripe_gateway import StripeClientGateway
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.core.pricing import ALL_METERS
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import load_settings
from sim.fleet import OrgSpec, SandboxFleet, compare
from tests.conftest import BASE_ENV, T0

H = 3600
ORGS = [
    OrgSpec("acme", "legacy", "pro", "cus_acme"),
    OrgSpec("globex", "legacy", "pro", "cus_globex"),
    OrgSpec("initech", "unified", "pro", "cus_initech"),
    OrgSpec("umbrella", "unified", "pro", "cus_umbrella"),
    OrgSpec("hooli", "legacy", "free"),
]


def setup_stripe(emulator: Any) -> stripe.StripeClient:
    client = stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url}, max_network_retries=2)
    for name in ALL_METERS:
        client.v1.billing.meters.create({"display_name": name, "event_name": name})
    return client


def test_hours_of_ticks_bill_exactly_the_usage(svc: Container, clock: FixedClock, emulator: Any) -> None:
    client = setup_stripe(emulator)
    for spec in ORGS:
        svc.store.put_org(
            Org(spec.org_id, plan=spec.plan, billing_mode=spec.billing_mode, stripe_customer_id=spec.customer)
        )
    live = Container(
        load_settings(BASE_ENV | {"SHADOW": "false"}),
        svc.store,
        svc.archive,
        clock,
        meter_gateway=StripeClientGateway(client),
    )
    fleet = SandboxFleet(ORGS, Decimal(T0), period=120)  # 2-minute ticks keep moto fast; intervals stay fractional
    clock.set(T0)
    held_back: list[dict[str, Any]] = []
    for step in range(1, 2 * 12 + 1):  # 2 hours, in 5-minute steps
        clock.set(T0 + step * 300)
        emulator.app.state.fixed_now = clock.now()
        batch = fleet.ticks_until(Decimal(clock.now() - 25))
        if step == 10:
            held_back, batch = batch[:15], batch[15:]  # a cell that was cut off: these arrive after the roll
        body = json.loads(json.dumps(batch), parse_float=Decimal)
        ingest_batch(body, "cell-a", svc.store, live.settings, clock.now())
        ingest_batch(body[: len(body) // 3], "cell-a", svc.store, live.settings, clock.now())  # forwarder re-sends
        if step % 6 == 0:
            run_rollup(live, "schedule")
        if step == 20 and held_back:  # after hour 0 was rolled (step 18)
            ingest_batch(
                json.loads(json.dumps(held_back), parse_float=Decimal), "cell-a", svc.store, live.settings, clock.now()
            )
    clock.set(T0 + 3 * H + 900)
    emulator.app.state.fixed_now = clock.now()
    result = run_rollup(live, "final").body()
    assert result["send"]["failed"] == 0, result

    totals = emulator.app.state.totals()
    billed = {(c, m): Decimal(v) for c, ms in totals.items() for m, v in ms.items()}
    assert compare(fleet.billed, billed) == [], json.dumps(result)
    assert len(fleet.billed) >= 6, "legacy orgs bill one meter per tier, unified orgs one overage meter"
    identifiers = [e.identifier for e in emulator.app.state.events.values()]
    assert len(identifiers) == len(set(identifiers))
    assert any(":late:" in i for i in identifiers), "the held-back batch was billed as a delta"
