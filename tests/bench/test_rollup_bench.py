"""The rollup bench's counting figures on a small fleet (timings are the bench's job, not a test's)."""

from __future__ import annotations

from bench.aggregation import aggregation
from bench.harness import Workload
from bench.rollup import end_to_end


def test_one_stripe_call_per_org_bucket_meter_plus_deltas() -> None:
    result = end_to_end(Workload(orgs=3, sandboxes_per_org=1, period=60, hours=1.5), straggle_every=17)
    assert result["stragglers"] > 0 and result["delta_events"] > 0
    assert result["first_events_match"], result
    assert result["stripe_calls"] == result["first_events"] + result["delta_events"]
    # The stragglers' writes are told apart: their samples and slots, and their delta rows created and sent.
    assert result["late_wu"]["late"] >= 2 * result["stragglers"] and result["late_wu"]["late_send"] > 0


def test_aggregation_memory_does_not_grow_with_samples() -> None:
    peaks = list(aggregation(40_000)["peak_bytes_streaming"].values())
    assert peaks[1] < 1.5 * peaks[0]
