"""Edges of what a request may carry that the fuzz found first, pinned by example on the in-memory store.

They keep the branches the fuzz reached covered by plain examples, and fail on a regression
without Hypothesis having to find the input again.
"""

from __future__ import annotations

import pytest

from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.orgs import Org
from chalicelib.services.ingest import ingest_batch
from chalicelib.services.parity import WindowError, parse_window
from chalicelib.settings import Settings
from tests.conftest import T0, iso, tick


def test_a_usage_tick_without_org_id_is_quarantined_and_the_rest_of_its_batch_kept(
    memory: MemoryStore, settings: Settings
) -> None:
    memory.put_org(Org("acme", plan="pro", billing_mode="legacy", stripe_customer_id="cus_acme"))
    now = T0 + 2 * 3600
    result = ingest_batch([tick("no-org", None, iso(now - 60)), tick("ok", "acme", iso(now - 60))], "cell-a",
                          memory, settings, now)
    assert result.quarantined == [{"index": 0, "id": "no-org", "reason": "usage_tick without org_id"}]
    assert [q.quarantine_id for q in memory.quarantine()] == ["no-org"]
    assert (result.pro, result.samples) == (1, 1)


@pytest.mark.parametrize("params", [{"from": "x", "to": "3600"}, {"from": "0", "to": "1e3"}])
def test_a_parity_window_that_is_not_integers_is_refused_naming_both(params: dict[str, str]) -> None:
    with pytest.raises(WindowError, match="must be integers"):
        parse_window(params)
