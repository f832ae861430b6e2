"""bench/capacity_model: the measured curve and the model behave (small buckets; `make bench` runs 10 million)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.capacity_model import (
    QUERY_PAGE_BYTES,
    SAMPLE_SHARDS,
    ingest_limit,
    read_io,
    rollup_curve,
    rollup_limit,
    send_limit,
    service_check,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_curve_streams_and_plans_the_same_rows_whatever_the_bucket_size() -> None:
    curve, item_bytes = rollup_curve([2_000, 8_000], orgs=40)
    assert 250 <= item_bytes <= 450  # a realistic sample item (README: ~270 B of attributes and more)
    small, large = curve
    assert small["outbox_rows"] == large["outbox_rows"] >= 40  # rows per (org, meter), not per sample
    assert large["cpu_s"] > small["cpu_s"] > 0
    assert large["run_s_today"] >= large["run_s_parallel_shards"]
    limit = rollup_limit(curve)
    assert limit["lambda_900s"]["ticks_per_s"] > limit["timeout_300s"]["ticks_per_s"] > limit["parity_route_29s"][
        "ticks_per_s"] > 0


def test_the_service_rolls_a_bucket_on_the_memory_store() -> None:
    got = service_check(3_000, orgs=30)
    assert got["samples"] == 3_000 and got["rows"] >= 30 and got["cpu_s"] > 0


def test_reads_are_paged_per_shard_and_bounded_by_the_partition_rate() -> None:
    one = read_io(1_000, 300)
    assert one["pages"] == SAMPLE_SHARDS and one["page_s"] == 0.05  # a small page: latency bound
    big = read_io(10_000_000, 330)
    per_shard = 10_000_000 / SAMPLE_SHARDS * 330
    assert big["pages"] == SAMPLE_SHARDS * -(-int(per_shard) // QUERY_PAGE_BYTES)
    assert big["page_s"] > 0.08  # a full page costs 256 RU: 3,000 RCU/s per partition -> ~85 ms
    assert big["sequential_s"] == round(big["parallel_s"] * SAMPLE_SHARDS, 3)


def test_limits_and_costs() -> None:
    ingest = ingest_limit()
    assert ingest["first"].startswith("sample shards") and 30_000 < ingest["ticks_per_s"] < 32_000
    send = send_limit()
    assert send["events_per_hour"] == 25_600 and send["at_concurrency_64"] <= 3_600_000


def test_the_script_prints_json_and_a_table() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.capacity_model", "--max", "5000", "--orgs", "20",
                          "--service-samples", "2000"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    body = json.loads(out.stdout)
    assert body["bench"] == "capacity_model" and body["rollup_curve"][-1]["samples"] == 5000
    assert "rollup limit" in out.stderr
    costs = body["usd_per_million_ticks"]
    assert costs["provisioned"]["total"] < costs["on-demand"]["total"]
    assert "| **total** |" in out.stderr  # the cost table docs/capacity.md shows
