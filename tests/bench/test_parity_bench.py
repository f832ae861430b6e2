"""bench/parity: the route reads no raw sample, settled or not (a small bucket here; `make bench`: 10 million)."""

from __future__ import annotations

from bench.parity import T0, build, main, run


def test_the_route_reads_no_raw_sample_settled_or_not() -> None:
    out = run(samples=50_000, orgs=300, late=40)
    assert out["unsettled"]["status"] == 503 and out["unsettled"]["tasks_enqueued"] == 32
    assert out["unsettled"]["retry_after"] == "60"
    assert out["settled_with_stragglers"]["samples_counted"] == 50_040, "the stragglers from the late index"
    assert out["settled_swept"]["samples_counted"] == 50_040, "the stragglers now in the aggregates, once"
    assert out["settled_swept"]["orgs"] == 300
    for case in ("unsettled", "settled_with_stragglers", "settled_swept"):
        assert out[case]["raw_samples_read"] == 0, case


def test_the_counter_counts_what_a_raw_read_would_cost() -> None:
    store, _ = build(samples=1_000, orgs=10, late=0)
    assert sum(1 for _ in store.shard_samples(T0, 3)) == store.raw_reads == 1_000 // 32 + 1
    assert sum(1 for _ in store.bucket_samples(T0)) == 1_000


def test_main_passes_its_checks(capsys: object) -> None:
    assert main(["--samples", "20000", "--orgs", "50", "--late", "5"]) == 0
