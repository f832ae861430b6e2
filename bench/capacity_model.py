"""bench/capacity_model: how far one deployment goes, and the rollup's run time as a bucket grows.

Measured here: the rollup's CPU per sample over synthetic buckets up to 10 million samples
(DynamoDB wire items parsed by the store's own `stored_sample`, aggregated by `aggregate`,
planned by `plan_bucket`), streamed: items come from a small pool cycled on the fly, so memory
stays flat however large the bucket. Modelled: DynamoDB's side of the read (1 MB Query pages at
a stated latency, 3,000 RCU/s per partition, one partition per sample shard) and the documented
limits and prices below. Measured per-tick costs come from bench/ingest and bench/rollup (README).
Prints JSON on stdout and a table on stderr; docs/capacity.md explains the model.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from bench import fleet_model
from bench.capacity import item_size
from bench.harness import T0, report, settings
from chalicelib.adapters.dynamodb.items import sample_to_item, stored_sample
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.aggregation import aggregate
from chalicelib.core.fanout import tasks_for
from chalicelib.core.metering import plan_bucket
from chalicelib.core.orgs import Org
from chalicelib.core.samples import SAMPLE_SHARDS, Sample
from chalicelib.services.rollup_fanout import handle_task

# --- measured per-tick costs (README, bench/ingest and bench/rollup) ------------------------------
WU_PER_TICK = 1.02  # ingest + rollup + send, on-time ticks (1.017 measured; 1.0476 with 1 % stragglers)
RU_PER_TICK = 0.08  # 0.0827 measured over a whole run
HANDLER_CPU_S_PER_TICK = 21.8e-6
REQUESTS_PER_BATCH = 23  # DynamoDB requests per ingest batch of 500
TICK_PERIOD_S = 20  # one tick per running sandbox every ~20 s

# --- documented limits (AWS and Stripe documentation, us-east-1 defaults) -------------------------
PARTITION_WCU = 1_000  # per partition, whatever the table's mode
PARTITION_RCU = 3_000
TABLE_ONDEMAND_MAX_WCU = 40_000  # per-table on-demand throughput default (a raisable quota)
TABLE_ONDEMAND_MAX_RCU = 40_000
NEW_ONDEMAND_TABLE_WCU = 4_000  # what a new on-demand table serves at once; it doubles per previous peak
QUERY_PAGE_BYTES = 1 << 20
LAMBDA_MAX_S = 900
ROLLUP_TIMEOUT_S = 300  # .chalice/config.json, lambda_functions.rollup
LAMBDA_CONCURRENCY = 1_000  # account default per region
APIGW_RPS = 10_000  # REST API account throttle per region
APIGW_PAYLOAD_BYTES = 10 * 1024 * 1024
APIGW_TIMEOUT_S = 29
MAX_BODY_BYTES = 1_048_576  # the edge's own limit (settings.MAX_BODY_BYTES)
STRIPE_LIVE_RPS = 1_000
STRIPE_TEST_RPS = 25

# --- assumptions (stated, not measured here) -----------------------------------------------------
PAGE_LATENCY_S = 0.05  # one strongly consistent 1 MB Query page, in-region, service + network
REQUEST_LATENCY_S = 0.01  # one BatchWriteItem / BatchGetItem of an ingest batch
STRIPE_CALL_S = 0.25  # one meter-event POST, round trip
SEND_CONCURRENCY = 8
SEND_BUDGET_S = 200
ROLLUP_RUNS_PER_HOUR = 4
BATCH = 500  # envelopes per ingest request (the forwarder's default)
BUCKET_S = 3600
GOAL_TICKS = 30_000  # issue 19: 600,000 sandboxes

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


def read_io(n: int, item_bytes: int) -> dict[str, float]:
    """DynamoDB's side of reading a bucket of `n` samples: pages per shard, each bounded by latency or
    by the partition's read rate, shards one after another (as the code reads them) or all at once."""
    per_shard_bytes = math.ceil(n / SAMPLE_SHARDS) * item_bytes
    pages = max(1, math.ceil(per_shard_bytes / QUERY_PAGE_BYTES))
    page_ru = math.ceil(min(per_shard_bytes, QUERY_PAGE_BYTES) / 4096)  # strongly consistent
    page_s = max(PAGE_LATENCY_S, page_ru / PARTITION_RCU)
    return {"pages": pages * SAMPLE_SHARDS, "page_s": round(page_s, 4),
            "sequential_s": round(pages * page_s * SAMPLE_SHARDS, 3), "parallel_s": round(pages * page_s, 3),
            "ru": n * item_bytes / 4096}


def rollup_curve(sizes: list[int], orgs: int) -> tuple[list[dict[str, Any]], int]:
    pool = wire_pool(orgs)
    item_bytes = round(sum(item_size(i) for i in pool) / len(pool))
    org_map = {f"org-{i:06d}-{'x' * 20}": Org(f"org-{i:06d}-{'x' * 20}", plan="pro",
                                              billing_mode="legacy" if i % 2 else "unified",
                                              stripe_customer_id=f"cus_{i}") for i in range(orgs)}
    curve = []
    for n in sizes:
        point = rollup_cpu(pool, n, org_map) | read_io(n, item_bytes)
        point["run_s_today"] = round(point["cpu_s"] + point["sequential_s"], 2)
        point["run_s_parallel_shards"] = round(max(point["cpu_s"], point["parallel_s"]), 2)
        curve.append(point)
    return curve, item_bytes


def rollup_limit(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples per bucket (and so ticks/s with hour buckets) before a run outlasts its timeout."""
    last = curve[-1]
    per_sample = last["run_s_today"] / last["samples"]
    per_sample_parallel = last["run_s_parallel_shards"] / last["samples"]
    out: dict[str, Any] = {"s_per_sample_today": per_sample, "s_per_sample_parallel": per_sample_parallel}
    for name, budget in (("timeout_300s", ROLLUP_TIMEOUT_S), ("lambda_900s", LAMBDA_MAX_S)):
        samples = int(budget / per_sample)
        out[name] = {"samples_per_bucket": samples, "ticks_per_s": round(samples / BUCKET_S),
                     "sandboxes": round(samples / BUCKET_S * TICK_PERIOD_S)}
    samples = int(LAMBDA_MAX_S / per_sample_parallel)
    out["parallel_shards_900s"] = {"samples_per_bucket": samples, "ticks_per_s": round(samples / BUCKET_S)}
    # The parity route reads a bucket's raw samples in the API Lambda (before the bucket is settled, or
    # while stragglers wait for a sweep): API Gateway gives up after 29 s.
    samples = int(APIGW_TIMEOUT_S / per_sample)
    out["parity_route_29s"] = {"samples_per_bucket": samples, "ticks_per_s": round(samples / BUCKET_S),
                               "sandboxes": round(samples / BUCKET_S * TICK_PERIOD_S)}
    return out


def ingest_limit() -> dict[str, Any]:
    batch_s = HANDLER_CPU_S_PER_TICK * BATCH + REQUESTS_PER_BATCH * REQUEST_LATENCY_S
    limits = {
        "sample shards (32 x 1,000 WCU/s)": SAMPLE_SHARDS * PARTITION_WCU / WU_PER_TICK,
        "table on-demand default (40,000 WCU/s)": TABLE_ONDEMAND_MAX_WCU / WU_PER_TICK,
        "new on-demand table, before it has seen a peak": NEW_ONDEMAND_TABLE_WCU / WU_PER_TICK,
        "Lambda concurrency (1,000 x batch / batch time)": LAMBDA_CONCURRENCY * BATCH / batch_s,
        "API Gateway (10,000 requests/s x batch)": APIGW_RPS * BATCH,
    }
    steady = {k: v for k, v in limits.items() if not k.startswith("new")}
    first = min(steady, key=lambda k: steady[k])
    return {"batch_s": round(batch_s, 3), "limits_ticks_per_s": {k: round(v) for k, v in limits.items()},
            "first": first, "ticks_per_s": round(steady[first]),
            "sandboxes": round(steady[first] * TICK_PERIOD_S)}


def send_limit(meters_per_org: float = 2.0) -> dict[str, Any]:
    per_run = SEND_CONCURRENCY / STRIPE_CALL_S * SEND_BUDGET_S
    per_hour = min(per_run * ROLLUP_RUNS_PER_HOUR, STRIPE_LIVE_RPS * 3600)
    return {"calls_per_s": SEND_CONCURRENCY / STRIPE_CALL_S, "events_per_run": round(per_run),
            "events_per_hour": round(per_hour), "orgs_at_meters_per_org": round(per_hour / meters_per_org),
            "meters_per_org": meters_per_org,
            "at_concurrency_64": round(min(64 / STRIPE_CALL_S * SEND_BUDGET_S * ROLLUP_RUNS_PER_HOUR,
                                           STRIPE_LIVE_RPS * 3600)),
            "stripe_live_ceiling_per_hour": STRIPE_LIVE_RPS * 3600,
            "stripe_test_ceiling_per_hour": STRIPE_TEST_RPS * 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=10_000_000, help="largest bucket, in samples")
    parser.add_argument("--orgs", type=int, default=2_000)
    parser.add_argument("--service-samples", type=int, default=200_000, help="bucket for the in-memory service run")
    args = parser.parse_args()
    sizes = sorted({s for s in (10_000, 100_000, 1_000_000, 10_000_000) if s < args.max} | {args.max})
    curve, item_bytes = rollup_curve(sizes, args.orgs)
    limit = rollup_limit(curve)
    ingest, send = ingest_limit(), send_limit()
    us_per_sample = curve[-1]["cpu_s"] / curve[-1]["samples"] * 1e6
    cost = {mode: fleet_model.cost(GOAL_TICKS, us_per_sample, mode) for mode in ("on-demand", "provisioned")}
    service = service_check(args.service_samples, args.orgs)
    results = {"assumptions": {"page_latency_s": PAGE_LATENCY_S, "request_latency_s": REQUEST_LATENCY_S,
                               "stripe_call_s": STRIPE_CALL_S, "batch": BATCH, "tick_period_s": TICK_PERIOD_S},
               "item_bytes": item_bytes, "rollup_curve": curve,
               "service_on_memory_store": service,
               "rollup_limit": limit, "ingest": ingest, "send": send, "usd_per_million_ticks": cost}
    rows = [(f"rollup, bucket of {p['samples']:,}", f"{p['run_s_today']:,} s",
             f"cpu {p['cpu_s']:,} s + read {p['sequential_s']:,} s ({p['pages']:,} pages)",
             f"parallel shards {p['run_s_parallel_shards']:,} s") for p in curve]
    svc = service
    rows += [
        (f"the fanned-out rollup on the memory store, {svc['samples']:,}", f"{svc['us_per_sample']} us/sample",
         f"{svc['rows']:,} outbox rows", f"pure path {curve[-1]['us_per_sample']} us/sample (with wire parsing)"),
        ("rollup limit (300 s timeout)", f"{limit['timeout_300s']['ticks_per_s']:,} ticks/s",
         f"{limit['timeout_300s']['samples_per_bucket']:,} samples/bucket", "900 s: "
         f"{limit['lambda_900s']['ticks_per_s']:,} ticks/s"),
        ("parity route, raw read (29 s)", f"{limit['parity_route_29s']['ticks_per_s']:,} ticks/s",
         f"{limit['parity_route_29s']['samples_per_bucket']:,} samples/bucket", "unsettled bucket or late signal"),
        ("ingest limit", f"{ingest['ticks_per_s']:,} ticks/s", ingest["first"], f"{ingest['sandboxes']:,} sandboxes"),
        ("send limit", f"{send['events_per_hour']:,} events/h", f"{send['orgs_at_meters_per_org']:,} orgs at 2 meters",
         f"concurrency 64: {send['at_concurrency_64']:,}/h"),
        (f"$ per million ticks at {GOAL_TICKS:,} ticks/s", f"on-demand ${cost['on-demand']['total']}",
         f"provisioned ${cost['provisioned']['total']}", "<= $0.50 provisioned"),
    ]
    report("capacity_model", results, rows)
    print(fleet_model.cost_table(GOAL_TICKS, us_per_sample), file=sys.stderr)


if __name__ == "__main__":
    main()
