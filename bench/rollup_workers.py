"""The fanned-out rollup's CPU, measured with 1 and N worker processes in one run.

Each worker process runs the product's own worker, `handle_task` (services/rollup_fanout.py), over its
share of a bucket's (bucket, shard) tasks. A shard's samples are generated DynamoDB wire items, parsed as
the DynamoDB adapter parses a Query page (`stored_sample`), so the CPU is the worker's: parse, aggregate,
encode its partial as the adapter's items (`partial_to_items`). The store around it is the in-memory one
(no network, no moto), so what is measured is CPU, never a wait. The reducer (`reduce_bucket`: the
partials parsed back with `partial_rows`, combined, the aggregates stored, planned, outbox rows) runs once
in the parent, over every worker's partial items.

CPU seconds are each process's own (`time.process_time`), summed; wall seconds are the parent's clock
around all processes. The speed-up is wall(1) / wall(N): on a shared machine it is below N when the
cores are busy with other work, while CPU per sample stays what it is (docs/capacity.md).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.harness import T0, settings
from chalicelib.adapters.dynamodb.items import partial_rows, partial_to_items, stored_sample
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.core.aggregation import OrgAggregate, StoredSample
from chalicelib.core.fanout import ShardTask
from chalicelib.core.orgs import Org
from chalicelib.services.rollup_fanout import handle_task, reduce_bucket

BUCKET_S = 3600
ORGS_PER_ITEM = 2000  # as the DynamoDB adapter stores a partial


class WireShards(MemoryStore):
    """The in-memory store, but a shard's samples are wire items parsed as the DynamoDB adapter does and a
    partial is kept as the adapter's items. `extra_shards` makes the bucket wait for shards no worker of
    this process handles, so no reduce runs inside the workers' measurement."""

    def __init__(self, pool: list[dict[str, Any]], per_shard: int, shards: int, extra_shards: int = 0) -> None:
        super().__init__(sample_shards=shards)
        self.pool, self.per_shard, self.shards, self.extra = pool, per_shard, shards, extra_shards
        self.items: dict[int, list[dict[str, Any]]] = {}

    def bucket_shard_count(self, bucket_start: int) -> int:
        return self.shards + self.extra

    def shard_samples(self, bucket_start: int, shard: int) -> Iterator[StoredSample]:
        # Each shard starts at its own place in the pool, so the shards' items differ.
        start = shard * 997 % len(self.pool)
        wire = itertools.islice(itertools.cycle(self.pool[start:] + self.pool[:start]), self.per_shard)
        return map(stored_sample, wire)

    def put_partial(self, bucket_start: int, shard: int, aggregates: list[OrgAggregate], late: bool = False) -> None:
        self.items[shard] = partial_to_items(bucket_start, shard, aggregates, bucket_start + 86400, ORGS_PER_ITEM)

    def partial_shards(self, bucket_start: int, late: bool = False) -> frozenset[int]:
        return frozenset(self.items)

    def partials(self, bucket_start: int, late: bool = False) -> list[OrgAggregate]:
        items = [item for shard in sorted(self.items) for item in self.items[shard]]
        return [a for item in items for a in partial_rows(bucket_start, item)]


def _work(pool: list[dict[str, Any]], per_shard: int, shards: int, mine: list[int], out: Any) -> None:
    store = WireShards(pool, per_shard, shards, extra_shards=1)
    cfg, now = settings(SHADOW="false"), T0 + BUCKET_S + 3600
    began = time.process_time()
    for shard in mine:
        assert handle_task(store, cfg, ShardTask(T0, shard), "bench", now) is None  # the extra shard: no reduce
    out.put((time.process_time() - began, store.items))


def workers(pool: list[dict[str, Any]], shards: int, per_shard: int, processes: int) -> dict[str, Any]:
    """Every shard of one bucket handled by `processes` worker processes at once (shards dealt round robin)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_work, args=(pool, per_shard, shards, list(range(i, shards, processes)), out))
             for i in range(processes)]
    began = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]  # before join: a child blocks until its result is read
    wall = time.perf_counter() - began
    for p in procs:
        p.join()
    cpu = sum(r[0] for r in results)
    items = {shard: its for _, part in results for shard, its in part.items()}
    assert sorted(items) == list(range(shards))
    samples = shards * per_shard
    return {"processes": processes, "samples": samples, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "us_per_sample": round(cpu / samples * 1e6, 3), "items": items}


def reducer(pool: list[dict[str, Any]], shards: int, items: dict[int, list[dict[str, Any]]],
            orgs: dict[str, Org], repeat: int = 1) -> dict[str, Any]:
    """The reduce of one bucket over every shard's partial items: CPU per partial row (the best of `repeat`
    reduces, each on a store of its own)."""
    rows = sum(len(partial_rows(T0, i)) for its in items.values() for i in its)
    row_bytes = sum(len(i["rows"]["S"]) for its in items.values() for i in its) / rows
    cfg = settings(SHADOW="false")
    cpu, planned = float("inf"), 0
    for _ in range(repeat):
        store = WireShards(pool, 0, shards)
        store.items = items
        for org in orgs.values():
            store.put_org(org)
        began = time.process_time()
        report = reduce_bucket(store, cfg, T0, "bench", T0 + BUCKET_S + 3600, state=None)  # not settled yet
        cpu = min(cpu, time.process_time() - began)
        assert report is not None and report["rows"] > 0
        planned = report["rows"]
    return {"partial_rows": rows, "row_bytes": round(row_bytes, 1), "cpu_s": round(cpu, 3),
            "us_per_row": round(cpu / rows * 1e6, 3), "outbox_rows": planned}


@dataclass(frozen=True)
class OneAndN:
    one: dict[str, Any]
    many: dict[str, Any]
    reduce: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        strip = ("items",)
        return {"one": {k: v for k, v in self.one.items() if k not in strip},
                "n": {k: v for k, v in self.many.items() if k not in strip},
                "speedup": round(self.one["wall_s"] / self.many["wall_s"], 2),
                "cpu_ratio_n_to_1": round(self.many["cpu_s"] / self.one["cpu_s"], 2), "reducer": self.reduce}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least wall time, and the least CPU seen: the machine is shared, noise only adds."""
    out = min(runs, key=lambda r: r["wall_s"]) | {"cpu_s": min(r["cpu_s"] for r in runs)}
    # Cores the processes got from the machine: speed-up / this ratio's growth says how shared it was.
    return out | {"us_per_sample": round(out["cpu_s"] / out["samples"] * 1e6, 3), "runs": len(runs),
                  "cores_used": round(out["cpu_s"] / out["wall_s"], 2)}


def measure(pool: list[dict[str, Any]], orgs: dict[str, Org], shards: int, per_shard: int,
            processes: int, repeat: int = 3) -> OneAndN:
    """1 and N processes, alternated `repeat` times (so a burst of load elsewhere hits both alike)."""
    ones, manys = [], []
    for _ in range(repeat):
        ones.append(workers(pool, shards, per_shard, 1))
        manys.append(workers(pool, shards, per_shard, processes))
    one, many = best(ones), best(manys)
    assert one["items"] == many["items"]  # the partials do not depend on who computed them
    return OneAndN(one, many, reducer(pool, shards, one["items"], orgs, repeat))
