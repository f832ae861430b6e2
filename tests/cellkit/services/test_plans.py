"""Effective plan fallbacks and the sandbox-create gate, against the fake edge's org-policy route."""

from __future__ import annotations

import logging

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient, UrllibTransport
from cellkit.adapters.memory import MemoryStore
from cellkit.core.usage import OrgRow
from cellkit.services.plans import CreateRequest, EdgePolicy, SandboxGate, effective_plan
from cellkit.services.ticker import Ticker
from chalicelib.core.cap_tokens import mint
from tests.cellkit.conftest import JWT_SECRET, SECRET, T0, Captured
from tests.cellkit.fake_edge import FakeEdge


def policy(edge: FakeEdge, clock: ManualClock) -> EdgePolicy:
    return EdgePolicy(EdgeClient(edge.url, SECRET, "cell-a", UrllibTransport(), clock, timeout=2))


def test_plan_from_token_then_edge_then_cell_row_only_when_unreachable(
    edge: FakeEdge, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    from cellkit.core.captoken import verify

    store = MemoryStore()
    store.put_org(OrgRow("o1", "pro", max_memory_mb=32768))
    store.put_org(OrgRow("o2", "pro"))
    edge.state.policies["o1"] = {"plan": "free", "maxMemoryMb": 4096}
    token = verify(mint(JWT_SECRET, "o1", "pro", "cell-a", T0), JWT_SECRET, T0, "cell-a")
    p = policy(edge, clock)
    assert effective_plan("o1", token, p, store, log[0]).source == "cap-token"
    got = effective_plan("o1", None, p, store, log[0])
    assert (got.plan, got.source, got.max_memory_mb) == ("free", "edge", 4096)  # the edge beats the stale cell row
    assert edge.state.get_paths == ["/internal/org-policy?org_id=o1"]  # signed GET, verified by the edge's code
    unknown = effective_plan("o2", None, p, store, log[0])
    assert (unknown.plan, unknown.source) == ("free", "edge")  # the edge answered: the cell row is not consulted
    edge.stop()
    down = effective_plan("o1", None, p, store, log[0])
    assert (down.plan, down.source, down.max_memory_mb) == ("pro", "cell", 32768)
    assert log[1].events("org_policy_unreachable")
    assert effective_plan("zz", None, p, store, log[0]).source == "default"


def gate(authority: str, edge: FakeEdge, clock: ManualClock, log: logging.Logger, store: MemoryStore) -> SandboxGate:
    return SandboxGate(authority, "cell-a", JWT_SECRET, policy(edge, clock), store,
                       Ticker(store, "cell-a", "w1", clock, log), clock, log)


def test_edge_mode_create_needs_a_valid_cap_token(
    edge: FakeEdge, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    g = gate("edge", edge, clock, log[0], store)
    for token in (None, "junk", mint(JWT_SECRET, "o1", "pro", "cell-b", T0),
                  mint(JWT_SECRET, "o2", "pro", "cell-a", T0), mint(JWT_SECRET, "o1", "pro", "cell-a", T0 - 400)):
        answer = g.create(CreateRequest("s1", "o1", 1024, 1, token))
        assert answer.status == 401
        assert "create the sandbox through the edge" in answer.body["error"]
    assert store.running_sandboxes() == []
    ok = g.create(CreateRequest("s1", "o1", 8192, 2, mint(JWT_SECRET, "o1", "pro", "cell-a", T0)))
    assert (ok.status, ok.body["plan"], ok.body["plan_source"]) == (201, "pro", "cap-token")
    sbx = store.sandbox("s1")
    assert sbx is not None and sbx.plan == "pro" and sbx.memory_mb == 8192
    assert edge.state.get_paths == []  # a valid token needs no edge round trip


def test_cell_mode_creates_without_a_token_using_the_edge_policy(
    edge: FakeEdge, clock: ManualClock, log: tuple[logging.Logger, Captured]
) -> None:
    store = MemoryStore()
    edge.state.policies["o1"] = {"plan": "free", "maxMemoryMb": 4096}
    g = gate("cell", edge, clock, log[0], store)
    assert g.create(CreateRequest("s1", "o1", 8192, 1)).status == 403  # free plan limit from the edge
    answer = g.create(CreateRequest("s2", "o1", 1024, 1))
    assert (answer.status, answer.body["plan"], answer.body["plan_source"]) == (201, "free", "edge")
    assert g.create(CreateRequest("s3", "o1", 1024, 1, "junk")).status == 401  # a bad token is never ignored
