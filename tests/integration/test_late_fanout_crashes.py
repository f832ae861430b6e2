"""A late slot swept on DynamoDB (moto): a worker killed just before or after each kind of write it makes,
then every task delivered again, bills each straggler exactly once and adds it into the aggregates once.
(The in-memory adapters go through every store call: tests/simulation/test_fanout_simulation.py.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.faults import Crash
from chalicelib.core.aggregation import OrgAggregate
from chalicelib.core.orgs import Org
from chalicelib.core.samples import Sample
from chalicelib.services.late_fanout import walk_late
from chalicelib.services.rollup_fanout import InProcessTasks, on_messages
from chalicelib.settings import load_settings
from tests.conftest import PREFIX, T0, written_once

H = 3600
SLOT = T0 + H + 900
SETTINGS = load_settings({"SHADOW": "false", "BILL_FROM": "0", "EVENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x"})
NOW = SLOT + SETTINGS.LATE_SLOT_SECONDS + SETTINGS.LATE_MARGIN_SECONDS + SETTINGS.LATE_INDEX_LAG_SECONDS


MESSAGES: list[str] = []  # the coordinator's tasks for the slot: the same each time (written_once)


class Killed:
    """The store, with the process killed at the first call of `method`, before or after it ran."""

    def __init__(self, store: DynamoStore, method: str, when: str) -> None:
        self.store, self.method, self.when = store, method, when

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.store, name)
        if name != self.method:
            return call

        def killed(*args: Any, **kwargs: Any) -> Any:
            if self.when == "before":
                raise Crash(name)
            call(*args, **kwargs)
            raise Crash(name)

        return killed


def straggler(i: int, org: str, mb: int) -> Sample:
    start = Decimal(T0 + 20 * i)
    return Sample(f"late-{i}", org, "sbx", "cell-a", "w1", mb, 1, T0, start, start + 20, Decimal(20), T0 + 60 * 86400,
                  late=True)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("method", ["put_partial", "create_outbox_rows", "apply_late", "mark_late_swept"])
def test_a_late_worker_killed_at_a_write_then_redelivered_bills_once(dynamodb: Any, method: str, when: str) -> None:
    store = DynamoStore(dynamodb, PREFIX, SETTINGS.sample_retention_seconds, sample_shards=2)
    tasks = InProcessTasks()

    def coordinated() -> None:
        store.put_org(Org("leg", plan="pro", stripe_customer_id="cus_leg"))
        store.put_org(Org("uni", plan="pro", billing_mode="unified", stripe_customer_id="cus_uni"))
        store.save_aggregates(T0, [OrgAggregate("leg", T0, {1024: Decimal(100)}, 5)], {})
        store.mark_bucket_rolled(T0, {})
        store.put_samples([straggler(i, "leg" if i % 3 else "uni", 1024 if i % 2 else 4096) for i in range(12)],
                          late_slot=SLOT)
        walk_late(store, SETTINGS, "coordinator", NOW, tasks, claim=True)
        assert len(tasks.bodies) == 8
        MESSAGES[:] = tasks.bodies

    # The same slot, claimed and its tasks enqueued, before each kill: written through the store by a worker's
    # first case, restored in place (its tasks with it) for the others (tests/conftest.py).
    written_once("late-slot-coordinated", coordinated)
    messages = list(enumerate(MESSAGES))
    assert len(messages) == 8
    with pytest.raises(Crash):
        on_messages(Killed(store, method, when), SETTINGS, messages, "doomed", lambda: NOW)  # type: ignore[arg-type]
    done = on_messages(store, SETTINGS, messages, "redelivered", lambda: NOW)  # every task comes back
    assert done.failed == [] and (done.swept.keys() == {SLOT} or (method, when) == ("mark_late_swept", "after"))
    assert store.late_slots(0) == [store.late_slot(SLOT)] and store.late_slot(SLOT).swept  # type: ignore[union-attr]
    rows = {r.id: r.value for q in ("pending",) for r in store.outbox_queue(q)}
    assert rows == {
        f"leg:{T0}:sandbox_compute_sandbox_1gb:late:{SLOT}": Decimal(80),
        f"leg:{T0}:sandbox_compute_sandbox_4gb:late:{SLOT}": Decimal(80),
        f"uni:{T0}:sandbox_compute_sandbox_overage:late:{SLOT}": Decimal(200),
    }
    aggs = {a.org_id: (a.seconds_by_memory, a.samples, a.late_slots) for a in store.aggregates(T0)}
    assert aggs == {"leg": ({1024: Decimal(180), 4096: Decimal(80)}, 13, {SLOT}),
                    "uni": ({1024: Decimal(40), 4096: Decimal(40)}, 4, {SLOT})}
