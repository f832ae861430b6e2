"""bench/fleet_model: the capacity model's arithmetic (docs/capacity.md's tables come from it)."""

from __future__ import annotations

import math

import pytest

from bench import fleet_model as fm

M = fm.Measured(worker_us_per_sample=5.0, worker_us_per_sample_n=5.5, processes=2, speedup=1.8,
                reducer_us_per_row=3.0, partial_row_bytes=70, free_tick_us=2.0, free_tick_bytes=120)


def test_costs_add_up_and_provisioned_is_cheaper_at_a_steady_fleet() -> None:
    od, pv = fm.cost(30_000, 5.0, "on-demand"), fm.cost(30_000, 5.0, "provisioned")
    for c in (od, pv):
        parts = [v for k, v in c.items() if k not in ("total", "samples_wcu", "samples_rcu_floor")]
        assert c["total"] == pytest.approx(sum(parts), abs=1e-3)
    assert od["dynamodb_writes"] == pytest.approx(fm.WU_PER_TICK * fm.USD_M_WRU)
    # 1 WCU-hour carries 3,600 writes: at 70 % utilization a provisioned write costs 0.00065 / 3,600 / 0.7.
    assert pv["dynamodb_writes"] == pytest.approx(
        fm.WU_SAMPLE * 1.002 / fm.WU_SAMPLE * fm.USD_WCU_H / 3600 / 0.7 * 1e6
        + (fm.WU_PER_TICK - 1.002) * fm.USD_M_WRU, rel=1e-3)
    assert pv["total"] <= 0.50 < od["total"]
    assert pv["samples_wcu"] == round(30_000 / 0.7)
    assert "| **total** |" in fm.cost_table(30_000, 5.0)


def test_shards_keep_ingest_at_half_a_partition() -> None:
    assert fm.shards_for(1_000) == 32  # never fewer than the default
    assert fm.shards_for(30_000) == 64
    for ticks in (30_000, 100_000, 1_000_000):
        assert ticks * fm.WU_SAMPLE / fm.shards_for(ticks) <= fm.PARTITION_WCU * fm.PARTITION_TARGET


def test_a_bucket_grows_by_shards_not_by_worker_time() -> None:
    small, big = fm.bucket(10_000_000, M), fm.bucket(100_000_000, M)
    assert big["shards"] > small["shards"]
    # A shard never holds more than half a partition's writes for an hour, whatever the bucket.
    assert big["samples_per_shard"] <= fm.PARTITION_WCU * fm.PARTITION_TARGET * fm.BUCKET_S
    assert big["worker_run_s"] < fm.WORKER_TIMEOUT_S
    assert big["workers_s"] >= big["bucket_ru"] / fm.TABLE_ONDEMAND_RRU  # the table's read quota bounds it
    assert big["billed_after_close_min"] > small["billed_after_close_min"]


def test_as_built_the_goal_bucket_is_billed_within_30_minutes_and_before_it_never_was() -> None:
    goal = fm.bucket(108_000_000, M)
    # The reduce runs in the invocation that wrote the last partial: both inside the worker's timeout.
    assert goal["last_invocation_s"] <= fm.WORKER_TIMEOUT_S and goal["fits_timeout"]
    assert goal["billed_after_close_min"] <= 30
    # At the CPU measured on this machine (docs/capacity.md) the workers at once read within the samples
    # table's on-demand quota: they are sized to it. A faster CPU reads faster (M: over it; the table binds).
    measured = fm.Measured(10.96, 10.81, 2, 1.47, 3.53, 61, 5.80, 123)
    assert fm.bucket(108_000_000, measured)["reads_per_s"] <= fm.TABLE_ONDEMAND_RRU < goal["reads_per_s"]
    before = fm.bucket(108_000_000, M, **fm.BEFORE)
    assert before["invocation_s"] > 120 and before["billed_after_close_min"] is None
    assert fm.fanout_ceiling(M) > 30_000 > fm.fanout_ceiling(M, **fm.BEFORE)
    assert fm.reducer_ceiling(M) > 30_000 > fm.reducer_ceiling(M, **fm.BEFORE)
    # Each change of the billing table adds up to the as-built row; the in-run sender misses the target.
    cases = dict(fm.billing_cases(30_000, M))
    assert [c["billed_after_close_min"] is None for c in cases.values()] == [True, True, True, False, False, False]
    assert cases["+ the schedule every 5 minutes: as built"] == goal
    assert cases["(as built, with the in-run sender, 32 calls/s)"]["billed_after_close_min"] > 30


def test_the_reducer_ceiling_is_where_the_last_invocation_outgrows_its_timeout() -> None:
    c = fm.reducer_ceiling(M)
    assert fm.bucket(round(c * 0.99 * fm.BUCKET_S), M)["fits_timeout"]
    assert not fm.bucket(round(c * 1.01 * fm.BUCKET_S), M)["fits_timeout"]
    assert fm.reducer_ceiling(M, timeout_s=fm.LAMBDA_MAX_TIMEOUT_S) > 2 * c


def test_every_part_is_in_the_table_with_a_ceiling() -> None:
    rows = fm.parts(30_000, M)
    assert [r.part.split(":")[0] for r in rows] == [
        "ingest", "ingest", "ingest", "sample shards", "rollup fan-out", "reducer", "parity", "send",
        "stragglers", "credits"]
    assert all(r.max_ticks_per_s > 0 for r in rows) and math.isinf(rows[6].max_ticks_per_s)
