"""bench/capacity_model: the fanned-out rollup's CPU, measured, and the capacity model that uses it.

Measured in one run (process CPU seconds, this machine; docs/capacity.md):
- the rollup worker's CPU per sample with 1 and N worker processes (bench/rollup_workers.py: the
  product's `handle_task` over generated DynamoDB wire items, shards dealt to the processes), the
  speed-up as a ratio, CPU seconds beside wall, and the reducer's CPU per partial row;
- the CPU per sample of parse + aggregate + plan as one stream grows to --max samples (it stays flat:
  the per-shard figure holds at any bucket size), and the whole fan-out on the in-memory store;
- the free tier's spend pass per ledger tick read (parse + sum by org).
Modelled (bench/fleet_model.py, documented limits and stated assumptions): the rollup of hour buckets
to 100 M samples, every part at 30,000 ticks/s on default quotas, when an hour bucket is billed, and the
$ per million ticks of both table capacity modes. JSON on stdout; a summary and the markdown tables
docs/capacity.md shows on stderr. Nothing here is timed against a budget: figures are CPU and quotas.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from bench import fleet_model as fm
from bench.capacity import item_size
from bench.harness import T0, report, settings
from bench.rollup_workers import measure
from chalicelib.adapters.dynamodb.credits import _tick, _tick_item
from chalicelib.adapters.dynamodb.items import sample_to_item, stored_sample
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.aggregation import aggregate
from chalicelib.core.credits import FreeTick
from chalicelib.core.fanout import tasks_for
from chalicelib.core.metering import plan_bucket
from chalicelib.core.orgs import Org
from chalicelib.core.samples import SAMPLE_SHARDS, Sample
from chalicelib.services.rollup_fanout import handle_task

BUCKET_S = 3600
GOAL_TICKS = 30_000  # issue 19: 600,000 sandboxes
BUCKETS = [1_000_000, 10_000_000, 30_000_000, 100_000_000, 108_000_000]  # the model's hour buckets


def wire_pool(orgs: int, size: int = 4096) -> list[dict[str, Any]]:
    """DynamoDB items as the rollup's Query returns them: UUID event ids, cell-length ids, 4 sizes."""
    tiers = (1024, 4096, 8192, 16384)
    pool = []
    for i in range(size):
        start = Decimal(T0 + (i * 7) % 3580) + Decimal("0.123456")
        sample = Sample(str(uuid.UUID(int=i)), f"org-{i % orgs:06d}-{'x' * 20}", f"sbx-{i:08d}-{'y' * 24}",
                        "cell-eu-west-1a", f"worker-{i % 50:03d}", tiers[i % 4], 2, T0, start,
                        start + Decimal("20.000001"), Decimal("20.000001"), T0 + 45 * 86400)
        pool.append(sample_to_item(sample, SAMPLE_SHARDS))
    return pool


def stream(pool: list[dict[str, Any]], n: int) -> Iterator[dict[str, Any]]:
    return itertools.islice(itertools.cycle(pool), n)


def rollup_cpu(pool: list[dict[str, Any]], n: int, orgs: dict[str, Org]) -> dict[str, Any]:
    """CPU of parse + aggregate + plan for one bucket of `n` samples (process time: the machine is shared)."""
    cfg = settings(SHADOW="false")
    start = time.process_time()
    aggs = aggregate(T0, map(stored_sample, stream(pool, n)))
    plan = plan_bucket(T0, aggs, orgs, cfg, "capacity", T0 + 4000)
    cpu = time.process_time() - start
    return {"samples": n, "cpu_s": round(cpu, 3), "us_per_sample": round(cpu / n * 1e6, 3),
            "outbox_rows": len(plan.rows)}


def service_check(n: int, orgs: int) -> dict[str, Any]:
    """The whole fanned-out rollup (every shard's worker, the reduce, plan, outbox rows, mark) on the in-memory
    store, for a bucket of
    `n` samples: what the service adds to the pure aggregation above. The memory store holds every
    sample, so this stays small (the streamed curve goes to 10 million)."""
    store = MemoryStore()
    org_ids = [f"org-{i:06d}-{'x' * 20}" for i in range(orgs)]
    for i, org in enumerate(org_ids):
        store.put_org(Org(org, plan="pro", billing_mode="legacy" if i % 2 else "unified", stripe_customer_id=f"c{i}"))
    tiers = (1024, 4096, 8192, 16384)
    start = Decimal(T0 + 100)
    for chunk in range(0, n, 10_000):
        store.put_samples([Sample(str(uuid.UUID(int=i)), org_ids[i % orgs], f"sbx-{i}", "cell-a", "w", tiers[i % 4], 2,
                                  T0, start, start + Decimal("20.000001"), Decimal("20.000001"), T0 + 45 * 86400)
                           for i in range(chunk, min(n, chunk + 10_000))])
    cfg = settings(SHADOW="false")
    began = time.process_time()
    now = T0 + BUCKET_S + cfg.GRACE_SECONDS + 1
    reports = [handle_task(store, cfg, t, "capacity", now) for t in tasks_for(T0, store.bucket_shard_count(T0))]
    report = reports[-1]
    cpu = time.process_time() - began
    assert report is not None
    return {"samples": n, "cpu_s": round(cpu, 3), "us_per_sample": round(cpu / n * 1e6, 3), "rows": report["rows"]}


def org_map(orgs: int) -> dict[str, Org]:
    return {f"org-{i:06d}-{'x' * 20}": Org(f"org-{i:06d}-{'x' * 20}", plan="pro",
                                           billing_mode="legacy" if i % 2 else "unified",
                                           stripe_customer_id=f"cus_{i}") for i in range(orgs)}


def rollup_curve(sizes: list[int], orgs: int) -> tuple[list[dict[str, Any]], int]:
    pool = wire_pool(orgs)
    item_bytes = round(sum(item_size(i) for i in pool) / len(pool))
    return [rollup_cpu(pool, n, org_map(orgs)) for n in sizes], item_bytes


def credit_pass_cpu(n: int, orgs: int, repeat: int = 1) -> dict[str, Any]:
    """The spend pass's work per ledger tick it reads: the adapter's parse (`_tick`) and the sum by org and
    slot (`_slot_sums`' loop), over wire items cycled from a pool; the best of `repeat` runs, as the workers'
    (the machine is shared: a slower run measures the neighbours too)."""
    pool = [_tick_item(FreeTick(str(uuid.UUID(int=i)), f"org-{i % orgs:06d}-{'x' * 20}", T0, 40 + i % 7,
                                T0 + 86400)) for i in range(4096)]
    cpu = math.inf
    for _ in range(repeat):
        sums: defaultdict[str, dict[int, int]] = defaultdict(dict)
        began = time.process_time()
        for t in map(_tick, itertools.islice(itertools.cycle(pool), n)):
            if not t.late:
                sums[t.org_id][t.slot_start] = sums[t.org_id].get(t.slot_start, 0) + t.cost_micro
        cpu = min(cpu, time.process_time() - began)
    return {"ticks": n, "cpu_s": round(cpu, 3), "us_per_tick": round(cpu / n * 1e6, 3),
            "item_bytes": round(sum(item_size(i) for i in pool) / len(pool))}


def model(m: fm.Measured) -> dict[str, Any]:
    return {"buckets": [fm.bucket(n, m) for n in BUCKETS],
            # JSON has no infinity: a part with no ceiling says null.
            "parts": [dataclasses.asdict(p) | {"max_ticks_per_s": None if math.isinf(p.max_ticks_per_s) else
                                               round(p.max_ticks_per_s)} for p in fm.parts(GOAL_TICKS, m)],
            "billing": {name: b for name, b in fm.billing_cases(GOAL_TICKS, m)},
            "usd_per_million_ticks": {mode: fm.cost(GOAL_TICKS, m.worker_us_per_sample, mode)
                                      for mode in ("on-demand", "provisioned")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=1_000_000, help="largest streamed bucket, in samples")
    parser.add_argument("--orgs", type=int, default=2_000)
    parser.add_argument("--service-samples", type=int, default=200_000, help="bucket for the in-memory fan-out")
    parser.add_argument("--shards", type=int, default=32, help="shards of the bucket the worker processes share")
    parser.add_argument("--per-shard", type=int, default=50_000, help="samples per shard")
    parser.add_argument("--processes", type=int, default=max(2, os.cpu_count() or 2), help="N")
    parser.add_argument("--credit-ticks", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3, help="1 and N alternated this many times, best kept")
    args = parser.parse_args()
    sizes = sorted({s for s in (10_000, 100_000, 1_000_000, 10_000_000) if s < args.max} | {args.max})
    load_before = os.getloadavg()
    runs = measure(wire_pool(args.orgs), org_map(args.orgs), args.shards, args.per_shard, args.processes,
                   args.repeat)
    workers = runs.summary() | {"load_average_before": [round(x, 2) for x in load_before],
                                "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    credits = credit_pass_cpu(args.credit_ticks, args.orgs, args.repeat)
    m = fm.Measured(worker_us_per_sample=runs.one["us_per_sample"], worker_us_per_sample_n=runs.many["us_per_sample"],
                    processes=args.processes, speedup=workers["speedup"],
                    reducer_us_per_row=runs.reduce["us_per_row"], partial_row_bytes=runs.reduce["row_bytes"],
                    free_tick_us=credits["us_per_tick"], free_tick_bytes=credits["item_bytes"])
    curve, item_bytes = rollup_curve(sizes, args.orgs)
    service = service_check(args.service_samples, args.orgs)
    results: dict[str, Any] = {
        "workers": workers, "credit_pass": credits, "item_bytes": item_bytes, "rollup_curve": curve,
        "service_on_memory_store": service, "measured": dataclasses.asdict(m), "model": model(m)}
    one, many = workers["one"], workers["n"]
    cost = results["model"]["usd_per_million_ticks"]
    rows = [
        ("rollup worker, 1 process", f"{one['us_per_sample']} us/sample",
         f"{one['cpu_s']} CPU-s, {one['wall_s']} s wall", f"{one['samples']:,} samples, {args.shards} shards, "
         f"{one['cores_used']} cores used"),
        (f"rollup worker, {args.processes} processes", f"{many['us_per_sample']} us/sample",
         f"{many['cpu_s']} CPU-s, {many['wall_s']} s wall", f"speed-up x{workers['speedup']}, "
         f"{many['cores_used']} cores used (load {workers['load_average_before'][0]})"),
        ("reducer", f"{runs.reduce['us_per_row']} us/partial row", f"{runs.reduce['partial_rows']:,} rows, "
         f"{runs.reduce['cpu_s']} CPU-s", f"{runs.reduce['row_bytes']} B a row"),
        ("spend pass", f"{credits['us_per_tick']} us/ledger tick", f"{credits['ticks']:,} ticks", ""),
        *[(f"stream of {p['samples']:,}", f"{p['us_per_sample']} us/sample", f"{p['cpu_s']} CPU-s",
           "parse + aggregate + plan") for p in curve],
        (f"fan-out on the memory store, {service['samples']:,}", f"{service['us_per_sample']} us/sample",
         f"{service['rows']:,} outbox rows", ""),
        (f"$ per million ticks at {GOAL_TICKS:,} ticks/s", f"on-demand ${cost['on-demand']['total']}",
         f"provisioned ${cost['provisioned']['total']}", "<= $0.50 provisioned"),
    ]
    report("capacity_model", results, rows)
    for table in (fm.bucket_table(BUCKETS, m), fm.parts_table(GOAL_TICKS, m), fm.billing_table(GOAL_TICKS, m),
                  fm.cost_table(GOAL_TICKS, m.worker_us_per_sample)):
        print("\n" + table, file=sys.stderr)


if __name__ == "__main__":
    main()
