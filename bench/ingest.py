"""bench/ingest: DynamoDB cost and handler CPU per pro tick, the edge's design beside the naive one.

Edge: one BatchGetItem per 100 orgs for the plan, BatchWriteItem of
deterministic samples (25 per request, no condition needed: a replay rewrites
identical items). Naive: one conditional PutItem per tick.
Targets (issue 2): <= 1.02 write units per pro tick; <= ceil(n/25) + ceil(orgs/100) + 2
requests per batch of n ticks; handler CPU (verify, parse, route; DynamoDB stubbed) < 30 us per tick.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from botocore.exceptions import ClientError

from bench.harness import T0, Workload, moto_store, report, settings
from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.items import sample_to_item
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.bootstrap import Container
from chalicelib.core.envelopes import validate_batch
from chalicelib.core.hmac_auth import sign_body, verify_body
from chalicelib.core.orgs import Org
from chalicelib.entrypoints.api.ingest_api import handle_ingest
from chalicelib.ports import Archive, BillingStore
from chalicelib.services.ingest import ingest_batch, lookup_orgs, route_ticks

SECRET = "bench-secret"


class NullStore:
    """DynamoDB stubbed out: the three calls ingest makes answer instantly, so only handler CPU counts."""

    def __init__(self, orgs: list[Org]) -> None:
        self.orgs = {o.org_id: o for o in orgs}

    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]:
        return {o: self.orgs[o] for o in org_ids if o in self.orgs}

    def put_samples(self, samples: list[Any], late_slot: int | None = None) -> int:
        return 0

    def put_quarantine(self, items: list[Any]) -> None:
        return None



class NullArchive(Archive):
    def put_batch(self, cell_id: str, now: int, body: bytes) -> str | None:
        return None

    def batches(self, cell_id: str | None, day: str) -> Iterator[tuple[str, bytes]]:
        return iter(())


def naive_ingest(items: list[Any], store: DynamoStore, now: int) -> None:
    """The naive design: the same validation and routing, then one conditional PutItem per sample."""
    s = settings()
    validated = validate_batch(items, s.MAX_INTERVAL_SECONDS, now, s.sample_retention_seconds)
    routed = route_ticks(validated.ticks, lookup_orgs(store, validated.ticks), s, now)
    for sample in routed.samples:
        # A replayed tick fails the condition; that is the naive design's dedupe.
        with contextlib.suppress(ClientError):
            item = sample_to_item(sample, store.bucket_shard_count(sample.bucket_start))
            store.client.put_item(TableName=store.samples_table, Item=item,
                                  ConditionExpression="attribute_not_exists(pk)")


def cost(workload: Workload, batch: int, design: str) -> dict[str, Any]:
    # The forwarder sends ticks soon after they happen: batches in time order, each at its own "now".
    ticks = sorted(workload.ticks(), key=lambda t: t["timestamp"])
    with moto_store(workload.org_records()) as (store, accountant, _):
        batches = [ticks[i : i + batch] for i in range(0, len(ticks), batch)]
        worst = 0
        for chunk in batches:
            now = int(datetime.fromisoformat(chunk[-1]["timestamp"]).timestamp()) + 30
            items = json.loads(json.dumps(chunk), parse_float=Decimal)
            before = accountant.request_count
            if design == "edge":
                ingest_batch(items, "cell-bench", store, settings(), now)
            else:
                naive_ingest(items, store, now)
            worst = max(worst, accountant.request_count - before)
        orgs_per_batch = min(workload.orgs, batch)
        return {
            "ticks": len(ticks),
            "batch": batch,
            "wu_per_tick": round(accountant.wu / len(ticks), 4),
            "requests_per_batch_max": worst,
            "request_budget": math.ceil(batch / 25) + math.ceil(orgs_per_batch / 100) + 2,
            "requests": dict(accountant.requests),
        }


def cpu_per_tick(workload: Workload, batch: int, repeats: int) -> float:
    """Microseconds of handler CPU per tick (verify, parse, validate, route; store stubbed), best of
    `repeats`: on a shared machine the minimum is the handler's own cost, the rest is neighbours."""
    ticks = workload.ticks()[:batch]
    body = json.dumps(ticks).encode()
    store = cast(BillingStore, NullStore(workload.org_records()))
    svc = Container(settings(), store, NullArchive(), FixedClock(T0 + 3 * 3600))
    headers = {"x-cell-id": "cell-bench", "x-timestamp": str(svc.now()),
               "x-signature": sign_body(SECRET, svc.now(), body)}
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        verify_body(headers, body, SECRET, svc.now())
        response = handle_ingest(headers, body, svc)
        best = min(best, time.process_time() - start)
        assert response.status_code == 202, response.body
    return best / len(ticks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.25)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    work = Workload(orgs=args.orgs, sandboxes_per_org=2, period=20, hours=args.hours)
    edge, naive = cost(work, args.batch, "edge"), cost(work, args.batch, "naive")
    cpu = cpu_per_tick(work, args.batch, args.repeats)
    passed = {
        "wu_per_tick<=1.02": edge["wu_per_tick"] <= 1.02,
        "requests_per_batch<=budget": edge["requests_per_batch_max"] <= edge["request_budget"],
        "cpu_us_per_tick<30": cpu < 30,
    }
    results = {"workload": vars(work) | {"ticks": edge["ticks"]}, "edge": edge, "naive": naive,
               "cpu_us_per_tick": round(cpu, 2), "targets": passed}
    report("ingest", results, [
        ("write units per pro tick", f"{edge['wu_per_tick']}", f"{naive['wu_per_tick']}", "<= 1.02"),
        (f"DynamoDB requests per batch of {args.batch}", str(edge["requests_per_batch_max"]),
         str(naive["requests_per_batch_max"]), f"<= {edge['request_budget']}"),
        ("handler CPU per tick (store stubbed)", f"{cpu:.1f} us", "same path + 1 put/tick", "< 30 us"),
    ])
    raise SystemExit(0 if all(passed.values()) else 1)


if __name__ == "__main__":
    main()
