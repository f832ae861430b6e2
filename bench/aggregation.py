"""bench/aggregation: the rollup's pure aggregation over generated samples: samples per second, and its peak
memory streaming n/4 against n samples (flat: bounded by orgs x meters, never by the samples)."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from bench.harness import T0
from chalicelib.core.aggregation import aggregate
from chalicelib.core.samples import StoredSample


def synthetic_samples(n: int, orgs: int = 200) -> Iterator[StoredSample]:
    tiers = (1024, 4096, 8192, 16384)
    twenty = Decimal("20.000001")
    for i in range(n):
        yield StoredSample(f"e{i}", f"org-{i % orgs}", tiers[i % 4], T0, Decimal(T0), Decimal(T0 + 20), twenty, False)


def aggregation(n: int) -> dict[str, Any]:
    samples = list(synthetic_samples(n))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        aggregate(T0, samples)
        best = min(best, time.perf_counter() - start)
    peaks = {}
    for size in (n // 4, n):
        # tracemalloc counts every thread's allocations (a test runner's I/O thread too): the least of three.
        peaks[size] = min(_streaming_peak(size) for _ in range(3))
    return {"samples": n, "samples_per_s": int(n / best),
            "peak_bytes_streaming": {str(k): v for k, v in peaks.items()}}


def _streaming_peak(size: int) -> int:
    tracemalloc.start()
    aggregate(T0, synthetic_samples(size))  # streamed: samples are never all in memory
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak
