"""bench/capacity_model: the measured figures and the model behave (small buckets; `make bench` runs the
full sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.capacity_model import credit_pass_cpu, org_map, rollup_curve, service_check, wire_pool
from bench.rollup_workers import measure

ROOT = Path(__file__).resolve().parents[2]


def test_the_curve_streams_and_plans_the_same_rows_whatever_the_bucket_size() -> None:
    curve, item_bytes = rollup_curve([2_000, 8_000], orgs=40)
    assert 250 <= item_bytes <= 450  # a realistic sample item (README: ~270 B of attributes and more)
    small, large = curve
    assert small["outbox_rows"] == large["outbox_rows"] >= 40  # rows per (org, meter), not per sample
    assert large["cpu_s"] > small["cpu_s"] > 0


def test_the_service_rolls_a_bucket_on_the_memory_store() -> None:
    got = service_check(3_000, orgs=30)
    assert got["samples"] == 3_000 and got["rows"] >= 30 and got["cpu_s"] > 0


def test_one_and_n_worker_processes_compute_the_same_partials_and_the_reducer_rolls_them() -> None:
    runs = measure(wire_pool(30), org_map(30), shards=4, per_shard=500, processes=2, repeat=1)
    summary = runs.summary()
    assert summary["one"]["samples"] == summary["n"]["samples"] == 2_000
    assert summary["one"]["processes"] == 1 and summary["n"]["processes"] == 2
    assert summary["speedup"] > 0 and summary["one"]["cpu_s"] > 0 and summary["n"]["wall_s"] > 0
    assert 0 < summary["one"]["cores_used"] <= 1.2  # one process uses at most one core (timer slack)
    reduce = summary["reducer"]
    # Every shard's partial has a row per org present; the reducer bills each org once.
    assert reduce["partial_rows"] == 4 * 30 and reduce["outbox_rows"] >= 30 and reduce["us_per_row"] > 0


def test_the_spend_pass_is_measured_per_tick() -> None:
    got = credit_pass_cpu(2_000, orgs=10)
    assert got["ticks"] == 2_000 and got["us_per_tick"] > 0 and 60 <= got["item_bytes"] <= 300


def test_the_script_prints_json_and_the_tables() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.capacity_model", "--max", "3000", "--orgs", "20",
                          "--service-samples", "1000", "--shards", "4", "--per-shard", "500", "--processes", "2",
                          "--credit-ticks", "1000", "--repeat", "1"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    body = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert body["bench"] == "capacity_model" and body["rollup_curve"][-1]["samples"] == 3000
    assert body["workers"]["n"]["processes"] == 2 and "speedup" in body["workers"]
    assert [b["samples"] for b in body["model"]["buckets"]][-2:] == [100_000_000, 108_000_000]
    costs = body["model"]["usd_per_million_ticks"]
    assert costs["provisioned"]["total"] < costs["on-demand"]["total"]
    for heading in ("| samples in the hour bucket |", "| part |", "| case |", "| **total** |"):
        assert heading in out.stderr
