"""The capacity model of the fanned-out edge: what one deployment carries, what breaks first, what it costs.

Pure arithmetic over three kinds of inputs, kept apart:
- measured: CPU of the rollup's worker, its reducer and the spend pass (bench/capacity_model, in one run), and
  the units per tick of bench/ingest, bench/rollup and bench/credits;
- documented: AWS's and Stripe's limits and default quotas, and us-east-1 list prices (dated below);
- assumed: latencies, fleet shape (orgs, memory sizes, meters, stragglers, free share), stated here.
docs/capacity.md shows the tables `tables()` prints; nothing here is timed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters.dynamodb.parallel import AGGREGATE_PUTS_AT_ONCE, OUTBOX_PUTS_AT_ONCE

# --- measured elsewhere (README, bench/ingest, bench/rollup, bench/credits, bench/parity) --------------------------
WU_PER_TICK = 1.02  # ingest + rollup + send per on-time pro tick (1.0194 measured)
WU_SAMPLE = 1.0  # the sample's own write, on the samples table (41,941 of 43,000 WU in bench/rollup)
RU_PER_TICK = 0.08  # whole run (0.0828 measured)
HANDLER_S_PER_BATCH = 0.24  # ingest: 23 DynamoDB requests per batch of 500 at REQUEST_S, plus 14.8 us CPU a tick
WU_PER_STRAGGLER = 2.35  # bench/rollup at 5 % stragglers (issue 19 asks <= 3; 7.61 before late slots)
WU_PER_FREE_TICK = 1.03  # bench/credits, 20 orgs x 1 sandbox
PARITY_CPU_S = 0.09  # bench/parity: a 10 M-sample bucket, no raw sample read, settled or not

# --- documented limits and default quotas (us-east-1) -----------------------------------------------------------
PARTITION_WCU, PARTITION_RCU = 1_000, 3_000
TABLE_ONDEMAND_WRU = TABLE_ONDEMAND_RRU = 40_000  # per table, on-demand default (raisable)
TABLE_PROVISIONED_MAX = 40_000  # per table, provisioned default (raisable); 80,000 per account
LAMBDA_CONCURRENCY = 1_000  # per account and region, shared by every function
APIGW_RPS = 10_000  # REST API throttle per account and region
SQS_STANDARD_RPS = 3_000  # not a limit for standard queues (nearly unlimited); batches of 10 per call
STRIPE_LIVE_RPS = 1_000  # Stripe's live-mode rate limit (all calls); one concurrent call per customer and meter
QUERY_PAGE_BYTES = 1 << 20
# The rollup worker as deployed (tests/integration/test_infra.py checks the packaged template against these).
WORKER_CONCURRENCY = 25  # app.py: maximum_concurrency
WORKER_TIMEOUT_S = 300  # .chalice/config.json, rollup_worker (the queue's visibility timeout is 6x: 1,800 s)
WORKER_BATCH = 1  # app.py: SQS messages per worker invocation
LAMBDA_MAX_TIMEOUT_S = 900
CREDITS_TIMEOUT_S = 60  # the spend pass, every minute
FREE_SHARDS = 4  # chalicelib/core/credits.py: partitions of a free slot's ledger
FREE_SLOT_S = 900
LATE_INDEX_PARTITIONS = 8  # chalicelib/core/late.py LATE_SHARDS: a late slot's index partitions (one task each)
GRACE_S = 600  # GRACE_SECONDS
SCHEDULE_S = 300  # the rollup's schedule (the coordinator), rate(5 minutes)
BUCKET_S = 3600

# --- assumptions -------------------------------------------------------------------------------------------------
TICK_PERIOD_S = 20
BATCH = 500
REQUEST_S = 0.010  # one DynamoDB request in region
STRIPE_CALL_S = 0.25
SEND_CONCURRENCY = 8  # the in-run sender (still used without a send queue): 8 groups at a time, 32 calls/s
# The send fanned out per customer (issue 19 part 4, landed): 20 workers x 10 customers at 250 ms a call, as its
# own bench models it.
SEND_FANOUT_RPS = 799
LAMBDA_CPU_FACTOR = 2.0  # a 1 GB Lambda has a bit over half a vCPU: this machine's CPU seconds x 2
ORGS_PER_TICKS = 50_000 / 30_000  # 50,000 orgs at the goal (12 sandboxes each)
SIZES_PER_ORG = 1.5  # memory sizes an org uses in an hour (one partial row each)
METERS_PER_ORG = 2
STRAGGLER_SHARE = 0.01
FREE_SHARE = 0.10
PARTITION_TARGET = 0.5  # shards sized so ingest uses half a partition's writes (replays after an outage)
PROVISIONED_READ_S = 300  # provisioned mode: the samples table's read floor reads a bucket in 5 minutes
# The reducer's conditional puts in flight (chalicelib/adapters/dynamodb/parallel.py).
OUTBOX_PUT_CONCURRENCY = OUTBOX_PUTS_AT_ONCE
AGGREGATE_PUT_CONCURRENCY = AGGREGATE_PUTS_AT_ONCE
# As it was before (docs/capacity.md keeps the comparison): 10 tasks an invocation one after another, 50 at
# once, 120 s, outbox rows one by one, aggregates in batches of 25 one after another, the schedule every 15 min.
BEFORE = {"batch": 10, "concurrency": 50, "timeout_s": 120, "outbox_concurrency": 1, "aggregate_concurrency": 25,
          "schedule_s": 900}

# --- prices, us-east-1, DynamoDB Standard table class (list prices since 2024-11-01; docs/capacity.md) -----------
USD_M_WRU, USD_M_RRU = 0.625, 0.125  # on-demand, per million request units
USD_WCU_H, USD_RCU_H = 0.00065, 0.00013  # provisioned, per capacity unit-hour
USD_GB_MONTH = 0.25
USD_M_APIGW = 3.50
USD_GB_S, USD_M_LAMBDA = 0.0000166667, 0.20
USD_1000_S3_PUT = 0.005
USD_M_SQS = 0.40
SAMPLE_BYTES = 267
RETENTION_MONTHS = 45 / 30.4


@dataclass(frozen=True)
class Measured:
    """What bench/capacity_model measured in this run (this machine's CPU seconds)."""

    worker_us_per_sample: float  # one worker process
    worker_us_per_sample_n: float  # each of N processes at once
    processes: int
    speedup: float
    reducer_us_per_row: float
    partial_row_bytes: float
    free_tick_us: float  # the spend pass, per ledger tick read
    free_tick_bytes: float


def shards_for(ticks_per_s: float) -> int:
    """SAMPLE_SHARDS so ingest uses PARTITION_TARGET of each partition (at least 32), a multiple of 16."""
    need = math.ceil(ticks_per_s * WU_SAMPLE / (PARTITION_WCU * PARTITION_TARGET))
    return max(32, math.ceil(need / 16) * 16)


def bucket(samples: int, m: Measured, send_rps: float = SEND_FANOUT_RPS, schedule_s: int = SCHEDULE_S,
           outbox_concurrency: int = OUTBOX_PUT_CONCURRENCY, batch: int = WORKER_BATCH,
           timeout_s: int = WORKER_TIMEOUT_S, concurrency: int = WORKER_CONCURRENCY,
           aggregate_concurrency: int = AGGREGATE_PUT_CONCURRENCY) -> dict[str, Any]:
    """One hour bucket of `samples`, rolled by the fan-out: each phase in seconds."""
    ticks = samples / BUCKET_S
    shards = shards_for(ticks)
    per_shard = samples / shards
    ru_shard = per_shard * SAMPLE_BYTES / 4096
    cpu_shard = per_shard * m.worker_us_per_sample_n * 1e-6 * LAMBDA_CPU_FACTOR
    read_shard = ru_shard / PARTITION_RCU  # whole pages of 256 RU: the partition's read rate binds, not latency
    orgs = ticks * ORGS_PER_TICKS
    # The shard's partial (a row per org and memory size) goes into one partition of its own.
    write_shard = orgs * SIZES_PER_ORG * m.partial_row_bytes / 1024 / PARTITION_WCU
    run_shard = cpu_shard + read_shard + write_shard
    # Worst case, every invocation gets a full batch of tasks and handles them one after another.
    invocation_s = min(batch, shards) * run_shard
    at_once = min(concurrency, math.ceil(shards / batch))
    waves = math.ceil(math.ceil(shards / batch) / concurrency)
    # A worker reads ru_shard over its run: the workers at once read that times their number, per second.
    reads_per_s = at_once * ru_shard / run_shard
    table_read_s = samples * SAMPLE_BYTES / 4096 / TABLE_ONDEMAND_RRU
    workers_s = max(waves * invocation_s, table_read_s)
    rows = shards * orgs * SIZES_PER_ORG
    reduce_cpu = rows * m.reducer_us_per_row * 1e-6 * LAMBDA_CPU_FACTOR
    reduce_read = rows * m.partial_row_bytes / QUERY_PAGE_BYTES * (256 / PARTITION_RCU)
    # Each aggregate a conditional put (a batch of 25 before: the same request rate as 25 in flight), all in
    # one partition: its 1,000 WCU/s bound them too.
    aggregates_s = max(orgs * REQUEST_S / aggregate_concurrency, orgs * 1.0 / PARTITION_WCU)
    events = orgs * METERS_PER_ORG
    outbox_s = events * REQUEST_S / outbox_concurrency
    reducer_s = reduce_cpu + reduce_read + aggregates_s + outbox_s
    send_s = events / send_rps
    wait_s = GRACE_S + schedule_s  # the bucket's grace, then the next coordinator run (worst case)
    # The scheduled run offers the rolled bucket's rows to the send: the next run after the reduce (worst case).
    offer_s = schedule_s
    # The reduce runs in the invocation that wrote the last partial, after its batch (worst case). One that
    # outlasts its timeout is killed and its tasks delivered again: the same work, never done.
    fits = invocation_s + reducer_s <= timeout_s
    return {"samples": samples, "ticks_per_s": round(ticks), "shards": shards, "samples_per_shard": round(per_shard),
            "worker_cpu_s": round(cpu_shard, 1), "worker_read_s": round(read_shard, 1),
            "worker_write_s": round(write_shard, 1), "worker_run_s": round(run_shard, 1),
            "invocation_s": round(invocation_s, 1), "waves": waves, "reads_per_s": round(reads_per_s),
            "workers_s": round(workers_s),
            "bucket_ru": round(samples * SAMPLE_BYTES / 4096), "partial_rows": round(rows),
            "reducer_cpu_s": round(reduce_cpu, 1), "reducer_read_s": round(reduce_read, 1),
            "aggregates_s": round(aggregates_s, 1), "outbox_s": round(outbox_s), "reducer_s": round(reducer_s),
            "last_invocation_s": round(invocation_s + reducer_s), "events": round(events),
            "send_s": round(send_s), "wait_s": wait_s, "offer_s": offer_s,
            "timeout_s": timeout_s, "fits_timeout": fits,
            "billed_after_close_min": round((wait_s + workers_s + reducer_s + offer_s + send_s) / 60, 1)
            if fits else None}


def ceiling(fits: Callable[[float], bool]) -> float:
    """The highest rate (ticks/s) that `fits`, by bisection (every part's use grows with the rate)."""
    low, high = 1.0, 10_000_000.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def fanout_ceiling(m: Measured, **deployed: Any) -> float:
    """The workers: every shard's invocation fits its timeout and the bucket is read within the hour."""
    def fits(ticks: float) -> bool:
        b = bucket(round(ticks * BUCKET_S), m, **deployed)
        return b["invocation_s"] <= b["timeout_s"] and b["workers_s"] <= BUCKET_S

    return ceiling(fits)


def reducer_ceiling(m: Measured, **deployed: Any) -> float:
    """The reducer: the invocation that writes the last partial and reduces fits its timeout."""
    return ceiling(lambda ticks: bool(bucket(round(ticks * BUCKET_S), m, **deployed)["fits_timeout"]))


@dataclass(frozen=True)
class Part:
    """One row of "what breaks first": the part, what binds it, its use at the rate, and its ceiling."""

    part: str
    limit: str
    use: str
    max_ticks_per_s: float
    to_raise: str


def parts(ticks: float, m: Measured) -> list[Part]:
    """Every part at `ticks` per second on default quotas: its ceiling in ticks/s, and what lifts it."""
    b = bucket(round(ticks * BUCKET_S), m)
    shards = b["shards"]
    batches = ticks / BATCH
    orgs = ticks * ORGS_PER_TICKS
    free = ticks * FREE_SHARE
    late_per_hour = ticks * STRAGGLER_SHARE * BUCKET_S
    # The spend pass reads every tick of the open 15-minute slots each minute: up to a slot of free ticks, its
    # shards at once (a partition each, at its own read rate); its CPU counted as overlapping none of the reads.
    pass_ticks = free * FREE_SLOT_S
    free_shards = math.ceil(free * WU_PER_FREE_TICK / PARTITION_WCU / PARTITION_TARGET)
    pass_s = pass_ticks * (m.free_tick_us * 1e-6 * LAMBDA_CPU_FACTOR + m.free_tick_bytes / 4096 / PARTITION_RCU
                           / FREE_SHARDS)
    return [
        Part("ingest: API Gateway", f"{APIGW_RPS:,} requests/s (account)", f"{batches:,.0f} requests/s of {BATCH}",
             APIGW_RPS * BATCH, "-"),
        Part("ingest: Lambda", f"{LAMBDA_CONCURRENCY:,} concurrent (account, shared)",
             f"{batches * HANDLER_S_PER_BATCH:,.0f} concurrent", LAMBDA_CONCURRENCY / HANDLER_S_PER_BATCH * BATCH, "-"),
        Part("ingest: samples table", f"{TABLE_ONDEMAND_WRU:,} WRU/s per table (on-demand default)",
             f"{ticks * WU_PER_TICK:,.0f} WRU/s", TABLE_ONDEMAND_WRU / WU_PER_TICK,
             "table write quota, above ~39,000 ticks/s"),
        Part("sample shards", f"{PARTITION_WCU:,} WCU/s per shard (partition)",
             f"SAMPLE_SHARDS={shards}: {ticks * WU_SAMPLE / shards:,.0f} WCU/s each",
             shards * PARTITION_WCU / WU_SAMPLE, f"SAMPLE_SHARDS (setting; {shards} here, 32 by default: "
             f"{32 * PARTITION_WCU / WU_SAMPLE:,.0f} ticks/s)"),
        Part("rollup fan-out", f"{WORKER_CONCURRENCY} workers at once (sized to the samples table's "
             f"{TABLE_ONDEMAND_RRU:,} RRU/s), one task each in {WORKER_TIMEOUT_S} s: a bucket read within the hour",
             f"{shards} shards of {b['worker_run_s']} s each, {b['waves']} waves: {b['workers_s']} s, reading "
             f"{b['reads_per_s']:,} RU/s", fanout_ceiling(m), f"maximum_concurrency with the samples table's read "
             f"quota (a worker reads ~1,500 RU/s), above ~{fanout_ceiling(m):,.0f} ticks/s (before: batches of 10 in "
             f"120 s, {fanout_ceiling(m, **BEFORE):,.0f})"),
        Part("reducer", f"the last worker's {WORKER_TIMEOUT_S} s: its shard, then the reduce",
             f"{b['partial_rows']:,} partial rows, {b['events']:,} outbox rows {OUTBOX_PUT_CONCURRENCY} at once: "
             f"{b['worker_run_s']} + {b['reducer_s']:,} s", reducer_ceiling(m),
             f"the worker's timeout to Lambda's 900 s: {reducer_ceiling(m, timeout_s=LAMBDA_MAX_TIMEOUT_S):,.0f} "
             f"(before: rows one by one in 120 s, {reducer_ceiling(m, **BEFORE):,.0f})"),
        Part("parity", "29 s (API Gateway)", f"{PARITY_CPU_S} s of CPU, no raw sample, any size", math.inf, "-"),
        Part("send", f"Stripe {STRIPE_LIVE_RPS:,} calls/s live (Stripe raises it on request)",
             f"{orgs * METERS_PER_ORG:,.0f} events an hour: {b['send_s']} s at {SEND_FANOUT_RPS} calls/s "
             "(the send fanned out: 20 workers x 10 customers)", SEND_FANOUT_RPS * BUCKET_S / METERS_PER_ORG
             / ORGS_PER_TICKS, "send workers 20 -> 25 for Stripe's 1,000/s (the in-run sender of before: "
             f"{SEND_CONCURRENCY / STRIPE_CALL_S:.0f} calls/s: 52 min an hour)"),
        # Stragglers are swept per closed late slot, fanned out (one task per index partition), no cap per run:
        # what binds is the late index's partitions taking a slot's writes (one index write per straggler).
        Part("stragglers", f"{LATE_INDEX_PARTITIONS} late-index partitions x {PARTITION_WCU:,} WCU/s",
             f"{late_per_hour:,.0f} an hour at {STRAGGLER_SHARE:.0%}",
             LATE_INDEX_PARTITIONS * PARTITION_WCU / STRAGGLER_SHARE, "LATE_SHARDS (code)"),
        Part("credits", f"{FREE_SHARDS} ledger partitions x {PARTITION_WCU:,} WCU/s; the pass in {CREDITS_TIMEOUT_S} s",
             f"{free:,.0f} free ticks/s ({FREE_SHARE:.0%}); a pass reads {pass_ticks:,.0f} in {pass_s:,.0f} s",
             min(FREE_SHARDS * PARTITION_WCU / WU_PER_FREE_TICK, free * CREDITS_TIMEOUT_S / pass_s) / FREE_SHARE,
             f"code: FREE_SHARDS {FREE_SHARDS} -> {free_shards} for the writes; the pass re-reads the open slot every "
             f"minute: past {free * CREDITS_TIMEOUT_S / pass_s / FREE_SHARE:,.0f} ticks/s it must read only new ticks"),
    ]


def cost(ticks: float, worker_us_per_sample: float, mode: str, utilization: float = 0.7) -> dict[str, float]:
    """$ per million ticks at a steady `ticks` per second. Provisioned: writes at the auto scaling target,
    reads at a floor that lets the workers read a bucket in PROVISIONED_READ_S; outbox and control stay
    on-demand (infra/capacity.py)."""
    per_m = 1e6
    hour_ticks = ticks * BUCKET_S
    steady_wu = WU_SAMPLE + 0.002  # samples + orgs per tick (the orgs table's writes are per org, not per tick)
    bursty_wu = WU_PER_TICK - steady_wu  # outbox and control: per bucket, on-demand in both modes
    bucket_ru = hour_ticks * SAMPLE_BYTES / 4096
    if mode == "provisioned":
        wcu_h = ticks * steady_wu / utilization
        # The read floor (SamplesReadCapacityMin) is held all hour: auto scaling does not follow a burst of
        # a few minutes. The other reads (orgs lookups) are steady, at the target.
        rcu_h = bucket_ru / PROVISIONED_READ_S + ticks * max(0.0, RU_PER_TICK - SAMPLE_BYTES / 4096) / utilization
        writes = (wcu_h * USD_WCU_H / hour_ticks * per_m) + bursty_wu * USD_M_WRU
        reads = rcu_h * USD_RCU_H / hour_ticks * per_m
    else:
        writes = WU_PER_TICK * USD_M_WRU
        reads = RU_PER_TICK * USD_M_RRU
    parts = {
        "dynamodb_writes": writes,
        "dynamodb_reads": reads,
        "dynamodb_storage_45d": per_m * SAMPLE_BYTES / 1e9 * USD_GB_MONTH * RETENTION_MONTHS,
        "api_gateway": per_m / BATCH / 1e6 * USD_M_APIGW,
        "lambda_ingest": per_m / BATCH * (0.5 * HANDLER_S_PER_BATCH * USD_GB_S + USD_M_LAMBDA / 1e6),
        "lambda_rollup_workers": per_m * worker_us_per_sample * 1e-6 * LAMBDA_CPU_FACTOR * USD_GB_S
        + per_m * SAMPLE_BYTES / 4096 / PARTITION_RCU * USD_GB_S,
        "sqs_tasks": shards_for(ticks) / hour_ticks * per_m * 3 * USD_M_SQS / 1e6,
        "s3_archive_puts": per_m / BATCH / 1000 * USD_1000_S3_PUT,
    }
    out = {k: round(v, 4) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()), 3)
    if mode == "provisioned":
        out["samples_wcu"] = round(ticks * WU_SAMPLE / utilization)
        out["samples_rcu_floor"] = round(bucket_ru / PROVISIONED_READ_S)
    return out


def markdown(headers: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def cost_table(ticks: float, worker_us_per_sample: float) -> str:
    od, pv = cost(ticks, worker_us_per_sample, "on-demand"), cost(ticks, worker_us_per_sample, "provisioned")
    rows: list[tuple[object, ...]] = [(k.replace("_", " "), f"{od[k]:.4f}", f"{pv[k]:.4f}") for k in od if k != "total"]
    rows.append(("**total**", f"**{od['total']:.3f}**", f"**{pv['total']:.3f}**"))
    return markdown(("$ per million ticks", "on-demand", "provisioned, auto scaling at 70 %"), rows)


def bucket_table(sizes: list[int], m: Measured) -> str:
    rows = []
    for n in sizes:
        b = bucket(n, m)
        shard = f"{b['worker_cpu_s']} + {b['worker_read_s']} + {b['worker_write_s']} = {b['worker_run_s']} s"
        rows.append((f"{n:,}", f"{b['ticks_per_s']:,}", b["shards"], f"{b['samples_per_shard']:,}", shard,
                     b["waves"], f"{b['bucket_ru'] / 1e6:.2f} M RU: {b['workers_s']} s", f"{b['partial_rows']:,}",
                     f"{b['reducer_cpu_s']} + {b['reducer_read_s']} + {b['aggregates_s']} + {b['outbox_s']} s"))
    return markdown(("samples in the hour bucket", "ticks/s", "shards", "samples per shard",
                     "one shard: CPU + read + partial write", f"waves of {WORKER_CONCURRENCY}",
                     "the bucket's read (all workers)", "partial rows",
                     "reducer: CPU + read + aggregates + outbox rows"), rows)


def parts_table(ticks: float, m: Measured) -> str:
    rows = []
    for p in parts(ticks, m):
        ok = "**yes**" if p.max_ticks_per_s >= ticks else "no"
        ceiling = "no limit" if math.isinf(p.max_ticks_per_s) else f"{p.max_ticks_per_s:,.0f}"
        rows.append((p.part, p.limit, p.use, ceiling, ok, p.to_raise))
    return markdown(("part", "binds at (default quota)", f"at {ticks:,.0f} ticks/s", "ceiling, ticks/s",
                     f">= {ticks:,.0f}", "to raise"), rows)


def billing_cases(ticks: float, m: Measured) -> list[tuple[str, dict[str, Any]]]:
    """When an hour bucket is billed: as the code stands, and as each change the model asks for adds up."""
    n = round(ticks * BUCKET_S)
    before = dict(BEFORE)
    return [
        ("before: worker batches of 10 (50 at once) in 120 s, outbox rows one by one, schedule 15 min",
         bucket(n, m, **before)),
        ("+ worker batch_size 1 (25 at once)", bucket(n, m, **(before | {"batch": 1, "concurrency": 25}))),
        ("+ outbox rows 32 and aggregates 8 at once", bucket(n, m, schedule_s=900, timeout_s=120)),
        ("+ the worker's timeout 300 s", bucket(n, m, schedule_s=900)),
        ("+ the schedule every 5 minutes: as built", bucket(n, m)),
        ("(as built, with the in-run sender, 32 calls/s)", bucket(n, m, send_rps=SEND_CONCURRENCY / STRIPE_CALL_S)),
    ]


def billing_table(ticks: float, m: Measured) -> str:
    rows = [(name, f"{b['wait_s'] // 60} min", f"{b['workers_s']} s (a batch {b['invocation_s']:,} s)",
             f"{b['reducer_s']:,} s ({b['outbox_s']:,} s of it outbox rows; the last invocation "
             f"{b['last_invocation_s']:,} s)", f"{b['offer_s'] // 60} min",
             f"{b['send_s']:,} s",
             f"**{b['billed_after_close_min']} min**" if b["fits_timeout"]
             else f"never: a worker outlasts its {b['timeout_s']} s")
            for name, b in billing_cases(ticks, m)]
    return markdown(("case", "grace + wait for the coordinator (worst)", "workers", "reducer",
                     "wait for the run that offers the rows", "send", "billed after the hour ends"), rows)
