"""The parity route over a bucket of 10 million samples: no raw sample read, under a second of CPU.

The in-memory store holds the bucket as DynamoDB would after the rollup: the samples (generated on
read: 10 million objects would not fit, and the route must never ask for them; every read of one is
counted), its settled aggregates (one item per org, their sample counts summing to the bucket's),
and stragglers in a late slot not swept yet. The route is asked through the Chalice app
(`chalice.test.Client`, a signed GET), three ways: the bucket settled with stragglers waiting, settled
and its late slot swept (the stragglers added into the aggregates), and not settled (503 +
Retry-After, its tasks handed to the workers' queue).

Usage: python -m bench.parity [--samples N] [--orgs N] [--late N]  (JSON on stdout, a table on stderr)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from chalice.test import Client

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.core.aggregation import OrgAggregate, aggregate_late
from chalicelib.core.hmac_auth import sign_get
from chalicelib.core.late import LATE_SHARDS
from chalicelib.core.orgs import Org
from chalicelib.core.samples import Sample, StoredSample
from chalicelib.entrypoints.api.edge_app import make_app
from chalicelib.settings import load_settings

T0 = 1_795_564_800
H = 3600
SECRET = "bench-secret"
PATH = "/internal/usage-parity"
TIERS = (1024, 4096, 8192, 16384)
LATE_SLOT = T0 + H + 600  # the stragglers arrived as the hour closed


class CountingStore(MemoryStore):
    """A memory store whose bucket T0 holds `samples` raw samples, made on read, and counts every one read."""

    def __init__(self, samples: int) -> None:
        super().__init__()
        self.bucket_size = samples
        self.raw_reads = 0

    def _generated(self, shard: int | None) -> Iterator[StoredSample]:
        start = Decimal(T0 + 100)
        for i in range(self.bucket_size):
            if shard is None or i % 32 == shard:
                self.raw_reads += 1
                yield StoredSample(f"e{i}", f"org-{i % 1000:05d}", TIERS[i % 4], T0, start, start + 20, Decimal(20),
                                   False)

    def bucket_samples(self, bucket_start: int) -> Iterator[StoredSample]:
        return self._generated(None) if bucket_start == T0 else super().bucket_samples(bucket_start)

    def shard_samples(self, bucket_start: int, shard: int) -> Iterator[StoredSample]:
        return self._generated(shard) if bucket_start == T0 else super().shard_samples(bucket_start, shard)


def build(samples: int, orgs: int, late: int) -> tuple[CountingStore, list[OrgAggregate]]:
    """The store state after the rollup settled bucket T0 (aggregates written directly, not ingested)."""
    store = CountingStore(samples)
    per_org, extra = divmod(samples, orgs)
    aggs = [OrgAggregate(f"org-{i:05d}", T0, {TIERS[i % 4]: Decimal(20 * (per_org + (i < extra)))},
                         per_org + (i < extra)) for i in range(orgs)]
    for a in aggs:
        store.put_org(Org(a.org_id, plan="pro", stripe_customer_id=f"cus_{a.org_id}"))
    start = Decimal(T0 + 200)
    store.put_samples([Sample(f"late-{i}", f"org-{i % orgs:05d}", "sbx", "cell", "w", 1024, 1, T0, start,
                              start + 20, Decimal(20), T0 + 60 * 86400, late=True) for i in range(late)],
                      late_slot=LATE_SLOT)
    return store, aggs


def ask(store: CountingStore, now: int, queue: MemoryQueue | None = None) -> dict[str, Any]:
    """One signed GET of the bucket through the app; the route's CPU time and what it read."""
    settings = load_settings({"EVENT_SECRET": SECRET, "SHADOW": "true", "BUCKET_SECONDS": str(H)})
    app = make_app(Container(settings=settings, store=store, archive=MemoryArchive(), clock=FixedClock(now),
                             task_queue=queue))

    query = f"from={T0}&to={T0 + H}"
    headers = {"X-Timestamp": str(now), "X-Signature": sign_get(SECRET, now, PATH, query)}
    before = store.raw_reads
    with Client(app) as client:
        began = time.process_time()
        res = client.http.get(f"{PATH}?{query}", headers=headers)
        cpu = time.process_time() - began
    body = json.loads(res.body)
    return {"status": res.status_code, "cpu_s": round(cpu, 4), "raw_samples_read": store.raw_reads - before,
            "retry_after": res.headers.get("Retry-After"), "orgs": len(body.get("orgs", [])),
            "samples_counted": sum(o["samples"] for o in body.get("orgs", [])),
            "tasks_enqueued": len(queue) if queue is not None else 0}


def run(samples: int, orgs: int, late: int) -> dict[str, Any]:
    store, aggs = build(samples, orgs, late)
    now = T0 + H + 600 + 60
    queue = MemoryQueue()
    unsettled = ask(store, now, queue)
    store.save_aggregates(T0, aggs, {"bench": True})
    waiting = ask(store, now)
    # The slot's sweep added the stragglers into the aggregates (naming the slot) and marked it swept.
    stragglers = (s for k in range(LATE_SHARDS) for s in store.late_slot_samples(LATE_SLOT, k))
    store.apply_late(LATE_SLOT, aggregate_late(stragglers))
    store.mark_late_swept(LATE_SLOT, {"bench": True})
    swept = ask(store, now)
    return {"samples": samples, "orgs": orgs, "late": late, "unsettled": unsettled,
            "settled_with_stragglers": waiting, "settled_swept": swept}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--late", type=int, default=2_000)
    args = parser.parse_args(argv)
    out = run(args.samples, args.orgs, args.late)
    checks = {name: out[name]["raw_samples_read"] == 0 and out[name]["cpu_s"] < 1.0
              for name in ("unsettled", "settled_with_stragglers", "settled_swept")}
    out["checks"] = checks
    print(json.dumps(out, indent=2))
    for name in checks:
        r = out[name]
        print(f"{name:26s} {r['status']}  cpu {r['cpu_s']:.3f} s  raw samples read {r['raw_samples_read']}  "
              f"samples counted {r['samples_counted']:,}", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
