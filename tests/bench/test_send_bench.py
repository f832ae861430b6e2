"""bench/send: CPU per call measured on a small outbox, the model's calls/s, and the goal's send time."""

from __future__ import annotations

import json

import pytest

from bench.send import CONCURRENCY, calls_per_s, demand, main


def test_the_deployed_concurrency_sustains_500_calls_per_s_within_stripes_limit() -> None:
    deployed = calls_per_s(CONCURRENCY, cpu_s=0.0002)
    assert 500 <= deployed["calls_per_s"] < 1000 and deployed["binds"] == "latency (in flight)"
    assert calls_per_s(200, cpu_s=0.0002)["calls_per_s"] == 1000, "never above Stripe's 1,000/s"
    assert calls_per_s(20, cpu_s=0.5)["binds"] == "Lambda CPU"


def test_the_goal_fleet_is_billed_within_30_minutes_without_the_v2_stream() -> None:
    worst = demand(1, rate=799)  # one sandbox per org: 600,000 orgs, 1.2 M meter events an hour
    assert worst["events_per_hour"] == 1_200_000 and worst["within_30_min"] and not worst["v2_needed"]
    assert not demand(1, rate=400)["within_30_min"], "half the deployed concurrency would not do"


def test_main_measures_and_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rows", "400", "--latency-ms", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    measured = out["measured"]
    assert measured["rows"] == 400 and measured["tasks"] == 100 and measured["worker_us_per_row"] > 0
    assert measured["stripe_python_us_per_call"] > 0
    # Ten customers' calls overlap: far more than one call per latency (a loaded machine still shows it).
    assert measured["overlap"]["calls_per_s"] > 2 * 1000 / 5
    assert out["deployed"]["concurrency"] == CONCURRENCY and out["deployed"]["calls_per_s"] >= 500
