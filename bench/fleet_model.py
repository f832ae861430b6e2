"""The capacity model of the fanned-out edge: what one deployment carries, what breaks first, what it costs.

Pure arithmetic over three kinds of inputs, kept apart:
- measured: CPU per sample of the rollup's worker and per partial row of its reducer (bench/capacity_model
  measures them in the same run), and the units per tick of bench/ingest, bench/rollup and bench/credits;
- documented: AWS's and Stripe's limits and default quotas, and us-east-1 list prices (dated below);
- assumed: latencies, fleet shape (orgs, memory sizes, meters, stragglers, free share), stated here.
docs/capacity.md shows the tables `tables()` prints; nothing here is timed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- measured elsewhere (README, bench/ingest, bench/rollup, bench/credits, bench/parity) --------------------------
WU_PER_TICK = 1.02  # ingest + rollup + send per on-time pro tick (1.0194 measured)
WU_SAMPLE = 1.0  # the sample's own write, on the samples table (41,941 of 43,000 WU in bench/rollup)
RU_PER_TICK = 0.08  # whole run (0.0828 measured)
HANDLER_S_PER_BATCH = 0.24  # ingest: 23 DynamoDB requests per batch of 500 at REQUEST_S, plus 14.8 us CPU a tick
WU_PER_STRAGGLER = 7.61  # bench/rollup (issue 19 asks <= 3)
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
WORKER_CONCURRENCY = 50  # app.py: the rollup worker's maximum_concurrency
WORKER_TIMEOUT_S = 120  # .chalice/config.json, rollup_worker
CREDITS_TIMEOUT_S = 60  # the spend pass, every minute
FREE_SHARDS = 4  # chalicelib/core/credits.py: partitions of a free slot's ledger
FREE_SLOT_S = 900
LATE_PER_RUN = 10_000  # chalicelib/services/rollup.py LATE_SAMPLES_PER_RUN
GRACE_S = 600  # GRACE_SECONDS
SCHEDULE_S = 900  # the rollup's schedule, rate(15 minutes)
BUCKET_S = 3600

# --- assumptions -------------------------------------------------------------------------------------------------
TICK_PERIOD_S = 20
BATCH = 500
REQUEST_S = 0.010  # one DynamoDB request in region
STRIPE_CALL_S = 0.25
SEND_CONCURRENCY = 8  # today's sender: 8 groups at a time, 32 calls/s
SEND_TARGET_RPS = 500  # issue 19's per-customer send fan-out
LAMBDA_CPU_FACTOR = 2.0  # a 1 GB Lambda has a bit over half a vCPU: this machine's CPU seconds x 2
ORGS_PER_TICKS = 50_000 / 30_000  # 50,000 orgs at the goal (12 sandboxes each)
SIZES_PER_ORG = 1.5  # memory sizes an org uses in an hour (one partial row each)
METERS_PER_ORG = 2
STRAGGLER_SHARE = 0.01
FREE_SHARE = 0.10
PARTITION_TARGET = 0.5  # shards sized so ingest uses half a partition's writes (replays after an outage)
PROVISIONED_READ_S = 300  # provisioned mode: the samples table's read floor reads a bucket in 5 minutes
OUTBOX_PUT_CONCURRENCY = 1  # the reducer creates outbox rows one conditional PutItem after another

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


def shards_for(ticks_per_s: float) -> int:
    """SAMPLE_SHARDS so ingest uses PARTITION_TARGET of each partition (at least 32), a multiple of 16."""
    need = math.ceil(ticks_per_s * WU_SAMPLE / (PARTITION_WCU * PARTITION_TARGET))
    return max(32, math.ceil(need / 16) * 16)


def bucket(samples: int, m: Measured, send_rps: float = SEND_TARGET_RPS,
           schedule_s: int = SCHEDULE_S) -> dict[str, float]:
    """One hour bucket of `samples`, rolled by the fan-out: each phase in seconds."""
    ticks = samples / BUCKET_S
    shards = shards_for(ticks)
    per_shard = samples / shards
    ru_shard = per_shard * SAMPLE_BYTES / 4096
    cpu_shard = per_shard * m.worker_us_per_sample_n * 1e-6 * LAMBDA_CPU_FACTOR
    read_shard = ru_shard / PARTITION_RCU  # whole pages of 256 RU: the partition's read rate binds, not latency
    waves = math.ceil(shards / WORKER_CONCURRENCY)
    table_read_s = samples * SAMPLE_BYTES / 4096 / TABLE_ONDEMAND_RRU
    workers_s = max(waves * (cpu_shard + read_shard), table_read_s)
    orgs = ticks * ORGS_PER_TICKS
    rows = shards * orgs * SIZES_PER_ORG
    reduce_cpu = rows * m.reducer_us_per_row * 1e-6 * LAMBDA_CPU_FACTOR
    reduce_read = rows * m.partial_row_bytes / QUERY_PAGE_BYTES * (256 / PARTITION_RCU)
    aggregates_s = max(orgs / 25 * REQUEST_S, orgs * 1.0 / PARTITION_WCU)  # batches of 25, one partition
    events = orgs * METERS_PER_ORG
    outbox_s = events * REQUEST_S / OUTBOX_PUT_CONCURRENCY
    reducer_s = reduce_cpu + reduce_read + aggregates_s + outbox_s
    send_s = events / send_rps
    wait_s = GRACE_S + schedule_s  # the bucket's grace, then the next coordinator run (worst case)
    return {"samples": samples, "ticks_per_s": round(ticks), "shards": shards, "samples_per_shard": round(per_shard),
            "worker_cpu_s": round(cpu_shard, 1), "worker_read_s": round(read_shard, 1),
            "worker_run_s": round(cpu_shard + read_shard, 1), "waves": waves, "workers_s": round(workers_s),
            "bucket_ru": round(samples * SAMPLE_BYTES / 4096), "partial_rows": round(rows),
            "reducer_cpu_s": round(reduce_cpu, 1), "reducer_read_s": round(reduce_read, 1),
            "outbox_s": round(outbox_s), "reducer_s": round(reducer_s), "events": round(events),
            "send_s": round(send_s), "wait_s": wait_s,
            "billed_after_close_min": round((wait_s + workers_s + reducer_s + send_s) / 60, 1)}


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
    # The spend pass reads every tick of the open 15-minute slots each minute: up to a slot of free ticks.
    pass_ticks = free * FREE_SLOT_S
    pass_s = pass_ticks * (m.worker_us_per_sample * 1e-6 * LAMBDA_CPU_FACTOR
                           + SAMPLE_BYTES / 4096 / (FREE_SHARDS * PARTITION_RCU))
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
        Part("rollup fan-out", f"{WORKER_CONCURRENCY} workers at once, {WORKER_TIMEOUT_S} s each; "
             f"{TABLE_ONDEMAND_RRU:,} RRU/s per table", f"{shards} shards: {b['worker_run_s']} s per worker, "
             f"{b['workers_s']} s per bucket", TABLE_ONDEMAND_RRU / (SAMPLE_BYTES / 4096),
             "table read quota (a bucket read within the hour); the 30-minute target: see the billing table"),
        Part("reducer", f"one worker, {WORKER_TIMEOUT_S} s", f"{b['partial_rows']:,} partial rows, "
             f"{b['events']:,} outbox rows one by one: {b['reducer_s']:,} s", ticks * WORKER_TIMEOUT_S / b["reducer_s"],
             "code: outbox rows created in parallel (not a quota)"),
        Part("parity", "29 s (API Gateway)", f"{PARITY_CPU_S} s of CPU, no raw sample, any size", math.inf, "-"),
        Part("send", f"Stripe {STRIPE_LIVE_RPS:,} calls/s live (raisable by Stripe)",
             f"{orgs * METERS_PER_ORG:,.0f} events per hour", STRIPE_LIVE_RPS * BUCKET_S / METERS_PER_ORG
             / ORGS_PER_TICKS, f"today's sender: {SEND_CONCURRENCY / STRIPE_CALL_S:.0f} calls/s"),
        Part("stragglers", f"{LATE_PER_RUN:,} per rollup run, {BUCKET_S // SCHEDULE_S} runs an hour",
             f"{late_per_hour:,.0f} an hour at {STRAGGLER_SHARE:.0%}",
             LATE_PER_RUN * BUCKET_S / SCHEDULE_S / STRAGGLER_SHARE / BUCKET_S, "LATE_SAMPLES_PER_RUN (code)"),
        Part("credits", f"{FREE_SHARDS} ledger partitions x {PARTITION_WCU:,} WCU/s; the pass in {CREDITS_TIMEOUT_S} s",
             f"{free:,.0f} free ticks/s ({FREE_SHARE:.0%}); a pass reads {pass_ticks:,.0f} in {pass_s:,.0f} s",
             min(FREE_SHARDS * PARTITION_WCU / WU_PER_FREE_TICK, free * CREDITS_TIMEOUT_S / pass_s) / FREE_SHARE,
             "FREE_SHARDS (code)"),
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


def markdown(headers: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def cost_table(ticks: float, worker_us_per_sample: float) -> str:
    od, pv = cost(ticks, worker_us_per_sample, "on-demand"), cost(ticks, worker_us_per_sample, "provisioned")
    rows: list[tuple[object, ...]] = [(k.replace("_", " "), f"{od[k]:.4f}", f"{pv[k]:.4f}") for k in od if k != "total"]
    rows.append(("**total**", f"**{od['total']:.3f}**", f"**{pv['total']:.3f}**"))
    return markdown(("$ per million ticks", "on-demand", "provisioned, auto scaling at 70 %"), rows)
