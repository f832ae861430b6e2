"""The cell kit against the real edge app (chalice.test.Client): the wire formats agree.

Ticks from the kit's ticker, forwarded by its forwarder to the edge's own
POST /ingest; the kit's parity checker reads the edge's own
GET /internal/usage-parity; the org-policy GET mints a cap-token the kit's gate
accepts. Clipped scale events and the edge's split samples agree exactly.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.memory import MemoryStore
from cellkit.core.captoken import verify
from cellkit.core.usage import OrgRow
from cellkit.ports import HttpResponse
from cellkit.services.forwarder import Forwarder
from cellkit.services.parity import ParityChecker
from cellkit.services.plans import EdgePolicy
from cellkit.services.ticker import Ticker
from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.adapters.memory.credits import MemoryCredits
from chalicelib.adapters.memory.store import MemoryStore as EdgeMemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.orgs import Org
from chalicelib.services.rollup import run_rollup
from chalicelib.settings import Settings
from tests.conftest import SECRET, T0

US = 1_000_000
H = 3600


@pytest.fixture
def clock() -> FixedClock:
    """The edge's clock (seconds): this module's ``svc`` uses it; the cell has its own ManualClock."""
    return FixedClock(T0)


@pytest.fixture
def svc(settings: Settings, clock: FixedClock) -> Container:
    """The edge on its in-memory store: what is checked here is the wire, and tests/contract holds the
    in-memory store to DynamoDB's answers (moto would spend most of this test sorting query results)."""
    return Container(settings=settings, store=EdgeMemoryStore(retention_seconds=settings.sample_retention_seconds),
                     archive=MemoryArchive(), clock=clock, credit_store=MemoryCredits(), cell_store=MemoryCells())


class ChaliceTransport:
    """HttpTransport into chalice.test.Client: the real routes, no socket."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        path = url.removeprefix("http://edge")
        res = getattr(self.client.http, method.lower())(path, body=body or b"", headers=dict(headers))
        return HttpResponse(res.status_code, res.body, dict(res.headers))


def test_ticks_through_the_real_ingest_and_parity_routes(client: Any, svc: Container, env: dict[str, str]) -> None:
    svc.store.put_org(Org("org-p", plan="pro", billing_mode="unified"))
    svc.store.put_org(Org("org-f", plan="free"))
    cell_clock = ManualClock(T0 * US)
    store = MemoryStore()
    store.put_org(OrgRow("org-p", "pro", "unified"))
    store.put_org(OrgRow("org-f", "free"))
    log = logging.getLogger("cellkit.test.real_edge")
    ticker = Ticker(store, "cell-r", "w1", cell_clock, log)
    edge = EdgeClient("http://edge", SECRET, "cell-r", ChaliceTransport(client), cell_clock)
    fwd = Forwarder(store, edge, cell_clock, lambda _: None, log)
    ticker.start("s1", "org-p", "pro", 4096, 2, (T0 - 95) * US + 123)  # straddles the window's start
    ticker.start("s2", "org-f", "free", 1024, 1, T0 * US)
    ticker.start("s3", "org-p", "pro", 2048, 1, (T0 + 1000) * US)
    rng = random.Random(4)
    while cell_clock.now_us() < (T0 + H + 700) * US:
        cell_clock.advance_us(20 * US + rng.randint(0, 999_999))
        if T0 * US + 1800 * US <= cell_clock.now_us() < T0 * US + 1821 * US:
            ticker.resize("s3", 8192, 4, cell_clock.now_us() - 3 * US)
        ticker.tick()
        svc.clock.set(cell_clock.now_us() // US)  # type: ignore[attr-defined]
        fwd.pump()
    ticker.stop("s1", (T0 + H + 30) * US)  # after the window: its scale event ends after the hour
    fwd.drain(max_posts=fwd.stats.posts + 50)
    assert store.spool_depth() == 0 and fwd.stats.statuses == {202: fwd.stats.posts}

    svc.clock.set(T0 + 2 * H)  # type: ignore[attr-defined]
    cell_clock.set((T0 + 2 * H) * US)
    checker = ParityChecker(store, edge, cell_clock, log)
    waits: list[float] = []
    # The edge answers 503 + Retry-After until its pipeline settles the hour: the kit waits (here, the
    # schedule runs meanwhile) and asks again.
    checker.sleep = lambda s: (waits.append(s), run_rollup(svc, "schedule"))  # type: ignore[func-returns-value]
    report = checker.check((T0, T0 + H), post=False)
    assert waits == [svc.settings.PARITY_RETRY_SECONDS]
    assert [o.org_id for o in report.orgs] == ["org-p"] and report.skipped_free == ("org-f",)
    (org,) = report.orgs
    expected = Decimal(4 * H + 2 * 800 + 8 * 1800)  # s1 all hour at 4 GB; s3 800 s at 2 GB then 1800 s at 8 GB
    assert abs(org.cell_gb_seconds - expected) < Decimal(8 * 20)  # the resize moment is jittered
    assert org.edge_gb_seconds == org.cell_gb_seconds and org.drift == 0 and report.clean

    # The edge's org-policy, asked with this cell's id, mints a cap-token the kit accepts.
    policy = EdgePolicy(edge).fetch("org-p")
    assert policy is not None and policy.plan == "pro"
    raw = edge.get("/internal/org-policy", [("org_id", "org-p"), ("cell_id", "cell-r")])
    import json

    token = json.loads(raw.body)["capToken"]
    assert verify(token, env["SESSION_JWT_SECRET"], T0 + 2 * H, "cell-r").org_id == "org-p"
