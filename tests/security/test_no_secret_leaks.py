"""No secret in logs, printed output or answers (issue 13, security).

A simulation-like run through the app (chalice.test.Client, moto, the Stripe emulator), with the
secrets reaching every place that uses them: signed cell requests (good, bad, replayed), org
registration, the org policy with a cap-token, parity and cell reports, ingest, a Stripe checkout
that provisions a subscription, bad webhooks, a rollup that sends to Stripe through injected 500s
and 429s, and a store outage. Every log record at DEBUG (all its attributes, extras included), all
that reached stdout/stderr, and every answer body are searched for each secret's value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.bootstrap import Container
from chalicelib.core.hmac_auth import sign_body, sign_get
from chalicelib.core.orgs import Org
from chalicelib.ports import StoreUnavailable
from chalicelib.services.products import ensure_products
from chalicelib.settings import load_settings
from sim.api import stripe_signature
from stripe_emulator.faults import Fault
from tests.conftest import ARCHIVE, BASE_ENV, T0, iso, tick

SECRETS = {
    "EVENT_SECRET": "evs-LEAKCANARY-7f3a9c51e2d84b06a1c3",
    "STRIPE_API_KEY": "sk_test_LEAKCANARY4q8Zr2Lm9Xv",
    "STRIPE_WEBHOOK_SECRET": "whsec_LEAKCANARYp3Nw7Ks1Jd",
    "SESSION_JWT_SECRET": "jwt-LEAKCANARY-9d2f6b3e8a1c47f0b5",
}


class Everything(logging.Handler):
    """Keeps every record whole: message, args, exception text and every `extra` attribute."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.texts.append(repr(record.__dict__) + record.getMessage() + exc)


@pytest.fixture
def captured() -> Iterator[Everything]:
    handler = Everything()
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


class OutageStore(DynamoStore):
    down = False

    def put_samples(self, samples: list[Any], late_slot: int | None = None) -> int:
        if self.down:
            raise StoreUnavailable(f"injected outage (table {self.samples_table})")
        return super().put_samples(samples, late_slot)


@pytest.fixture
def leaky_svc(dynamodb: Any, s3: Any, emulator: Any, clock: FixedClock) -> Container:
    settings = load_settings(BASE_ENV | SECRETS | {"SHADOW": "false", "STRIPE_API_BASE": emulator.url})
    store = OutageStore(dynamodb, settings.TABLE_PREFIX, settings.sample_retention_seconds)
    return Container(settings, store, S3Archive(s3, ARCHIVE), clock)


def signed(body: Any, now: int, secret: str = SECRETS["EVENT_SECRET"]) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    return {"body": raw, "headers": {"Content-Type": "application/json", "X-Timestamp": str(now), "X-Cell-Id": "cell-a",
                                     "X-Signature": sign_body(secret, now, raw)}}


def get(client: Any, path: str, query: str, now: int) -> Any:
    headers = {"X-Timestamp": str(now), "X-Signature": sign_get(SECRETS["EVENT_SECRET"], now, path, query)}
    return client.http.get(f"{path}?{query}", headers=headers)


def webhook(client: Any, event: dict[str, Any], now: int, secret: str = SECRETS["STRIPE_WEBHOOK_SECRET"]) -> Any:
    payload = json.dumps(event).encode()
    return client.http.post("/webhooks/stripe", body=payload, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(payload, secret, now)})


def run_flow(client: Any, svc: Container, clock: FixedClock, emulator: Any) -> list[Any]:
    sc = stripe.StripeClient(SECRETS["STRIPE_API_KEY"], base_addresses={"api": emulator.url})
    ensure_products(svc.accounts_gateway(), svc.accounts(), svc.now())
    customer = str(sc.v1.customers.create({"email": "leak@example.com"}).id)
    svc.store.put_org(Org("org-legacy", plan="pro", billing_mode="legacy", stripe_customer_id=customer))
    start = T0 + 2 * 3600
    clock.set(start)
    emulator.app.state.fixed_now = start
    now = svc.now()
    answers = [
        client.http.put("/internal/orgs/org-uni", **signed({"billing_mode": "unified"}, now)),
        get(client, "/internal/org-policy", "org_id=org-legacy&cell_id=cell-a", now),
        get(client, "/internal/org-policy", "org_id=nobody", now),
        client.http.post("/ingest", **signed([tick(f"t{i}", "org-legacy", iso(now - 20 * i)) for i in range(1, 30)],
                                             now)),
        client.http.post("/ingest", **signed([tick("bad", "org-legacy", "not a time")], now)),
        client.http.post("/ingest", **signed([tick("x", "org-legacy", iso(now))], now, secret="wrong")),
        client.http.post("/ingest", **signed([tick("x", "org-legacy", iso(now))], now - 900)),
        client.http.post("/ingest", body=b"[", headers={"Content-Type": "application/json"}),
        get(client, "/internal/usage-parity", f"from={T0}&to={start}", now),
        client.http.post("/internal/parity-reports", **signed({"cell_id": "cell-a", "window": {
            "from": T0, "to": T0 + 3600}, "tolerance": 0.02, "orgs": [], "clean": True}, now)),
        client.http.put("/internal/cells/cell-a", **signed({"authority": "cell", "billers_running": True,
                                                             "billed_through": T0, "pending_billable": 0,
                                                             "spool_depth": 3}, now)),
        get(client, "/internal/cells", "", now),
        webhook(client, {"id": "evt_leak_1", "type": "checkout.session.completed", "created": now, "data": {
            "object": {"id": "cs_1", "customer": customer, "metadata": {"type": "setup", "org_id": "org-uni"}}}}, now),
        webhook(client, {"id": "evt_leak_2", "type": "invoice.paid", "data": {"object": {}}}, now, secret="whsec_no"),
        webhook(client, {"id": "evt_leak_3", "type": "invoice.paid", "data": {"object": {}}}, now - 400),
    ]
    svc.store.down = True  # type: ignore[attr-defined]
    answers.append(client.http.post("/ingest", **signed([tick("o1", "org-legacy", iso(now - 5))], now)))
    svc.store.down = False  # type: ignore[attr-defined]
    clock.set(start + 3600 + 700)
    emulator.app.state.fixed_now = svc.now()
    emulator.app.faults.extend([Fault("/v1/billing/meter_events", "POST", "status", 4, 500),
                                Fault("/v1/billing/meter_events", "POST", "rate_limit", 2)])
    answers.append(client.http.post("/run", **signed({}, svc.now())))
    clock.set(start + 3 * 3600)
    emulator.app.state.fixed_now = svc.now()
    answers.append(client.http.post("/run", **signed({}, svc.now())))
    return answers


@pytest.fixture
def leaky_client(serve: Callable[[Container], Any], leaky_svc: Container) -> Any:
    return serve(leaky_svc)


def test_no_secret_in_logs_output_or_answers(leaky_client: Any, leaky_svc: Container, clock: FixedClock,
                                            emulator: Any, captured: Everything,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    answers = run_flow(leaky_client, leaky_svc, clock, emulator)
    statuses = [a.status_code for a in answers]
    # The run went where it should: accepted, refused and failed answers alike, and Stripe was used.
    assert {200, 202, 400, 401, 404, 503} <= set(statuses), statuses
    assert answers[0].json_body["org_id"] == "org-uni" and "capToken" in answers[1].json_body
    assert answers[12].status_code == 200, answers[12].body  # the checkout provisioned (API key used)
    assert emulator.app.state.events, "meter events reached Stripe through the API key"
    out, err = capfd.readouterr()
    haystack = {"logs": "\n".join(captured.texts), "stdout": out, "stderr": err,
                "answers": "\n".join(a.body.decode(errors="replace") + repr(dict(a.headers)) for a in answers)}
    assert len(captured.texts) > 10 and "batch_ingested" in haystack["logs"] and "store_unavailable" in haystack["logs"]
    leaks = [(name, where) for name, value in SECRETS.items() for where, text in haystack.items() if value in text]
    assert leaks == []
    # The canary works: a secret that does reach a log would be found.
    logging.getLogger("edge-billing").warning("oops %s", SECRETS["EVENT_SECRET"])
    assert SECRETS["EVENT_SECRET"] in captured.texts[-1]
