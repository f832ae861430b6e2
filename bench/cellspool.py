"""bench/cellspool: the cell kit's spool write rate and forwarder overhead per tick (the edge excluded).

Spool write: envelopes of realistic size into SQLite (WAL, synchronous=FULL, the
kit's default: survives power loss) in batched transactions, as the ticker writes
one tick round; and what durability costs: the same with synchronous=NORMAL
(survives SIGKILL only), and one-envelope commits (a lifecycle call's worst case)
under both, where the fsync per commit is not shared.
Ticker: the whole tick path per sandbox (plan, envelope JSON, cursor
compare-and-set, spool insert) for a cell of N sandboxes. Forwarder: drain a
full spool through a transport that answers 202 at once: spool read, body
join, HMAC signing, delete; CPU time per envelope.
Targets (issue 11): spool write >= 20,000 envelopes/s; forwarder < 50 us per tick.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.sqlite import SqliteStore
from cellkit.core.ticker import Sandbox, plan_tick, tick_envelope
from cellkit.ports import CellStore, HttpResponse, SpoolItem
from cellkit.services.forwarder import Forwarder
from cellkit.services.ticker import Ticker

T0_US = 1795564800 * 1_000_000
LOG = logging.getLogger("cellkit.bench")


class Accept:
    """The edge answering 202 instantly: what remains is the forwarder's own cost."""

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        return HttpResponse(202, b'{"accepted":0}', {})


def envelopes(n: int) -> list[SpoolItem]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        sbx = Sandbox(f"sbx-{i % 997:08x}{'0' * 24}", f"org_{i % 97:024x}", "pro", "wrk-a1b2c3d4", 4096, 2,
                      T0_US, T0_US + i * 1_000)
        plan = plan_tick(sbx, sbx.last_tick_us + 20_000_000 + rng.randint(0, 999_999), "wrk-a1b2c3d4")
        assert plan is not None
        env = tick_envelope(plan, "cell-eu-west-1a")
        out.append(SpoolItem(env["id"], json.dumps(env, separators=(",", ":"))))
    return out


def spool_rate(path: Path, n: int, batch: int, store: CellStore | None = None, durable: bool = True) -> float:
    items = envelopes(n)
    store = store or SqliteStore(str(path), durable=durable)
    start = time.perf_counter()
    for i in range(0, n, batch):
        store.spool_put(items[i : i + batch])
    elapsed = time.perf_counter() - start
    assert store.spool_depth() == n
    store.close()
    return n / elapsed


def postgres_rate(root: Path, n: int, batch: int) -> float | None:
    """The same write on a real PostgreSQL 16 (the pgserver wheel, as the tests use), when installed."""
    try:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
        import pgserver

        from cellkit.adapters.postgres import PostgresStore
    except ImportError:
        return None
    server = pgserver.get_server(str(root / "pg"), cleanup_mode="stop")
    try:
        return spool_rate(root, n, batch, PostgresStore(server.get_uri()))
    finally:
        server.cleanup()


def ticker_us(path: Path, sandboxes: int, rounds: int) -> float:
    store = SqliteStore(str(path))
    clock = ManualClock(T0_US)
    ticker = Ticker(store, "cell-bench", "w1", clock, LOG)
    for i in range(sandboxes):
        ticker.start(f"sbx-{i:06d}", f"org-{i % 50}", "pro", 4096, 2, T0_US)
    start = time.process_time()
    for _ in range(rounds):
        clock.advance_us(20_000_000 + random.randint(0, 999_999))
        assert ticker.tick().ticked == sandboxes
    elapsed = time.process_time() - start
    store.close()
    return elapsed / (sandboxes * rounds) * 1e6


def forwarder_us(path: Path, n: int, batch: int, repeats: int) -> float:
    best = float("inf")
    items = envelopes(n)
    for r in range(repeats):
        store = SqliteStore(str(path.with_suffix(f".{r}.db")))
        store.spool_put(items)
        clock = ManualClock(T0_US)
        fwd = Forwarder(store, EdgeClient("http://edge", "secret", "cell-bench", Accept(), clock), clock,
                        lambda _: None, LOG, batch=batch)
        start = time.process_time()
        assert fwd.drain() == n
        best = min(best, time.process_time() - start)
        store.close()
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sandboxes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--commits", type=int, default=2_000, help="one-envelope transactions, each durability")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cellspool-") as tmp:
        root = Path(tmp)
        rate = spool_rate(root / "spool.db", args.envelopes, args.batch)
        normal = spool_rate(root / "spool-normal.db", args.envelopes, args.batch, durable=False)
        commits = spool_rate(root / "commits.db", args.commits, 1)
        commits_normal = spool_rate(root / "commits-normal.db", args.commits, 1, durable=False)
        tick = ticker_us(root / "ticker.db", args.sandboxes, args.rounds)
        fwd = forwarder_us(root / "fwd.db", args.envelopes // 2, args.batch, args.repeats)
        pg = postgres_rate(root, args.envelopes // 2, args.batch)
    targets = {"spool_write_per_s>=20000": rate >= 20_000, "forwarder_us_per_tick<50": fwd < 50}
    results: dict[str, Any] = {
        "envelopes": args.envelopes, "batch": args.batch, "spool_write_per_s": round(rate),
        "spool_write_per_s_synchronous_normal": round(normal),
        "single_commits_per_s": round(commits), "single_commits_per_s_synchronous_normal": round(commits_normal),
        "postgres_spool_write_per_s": None if pg is None else round(pg),
        "ticker_us_per_tick": round(tick, 2), "forwarder_us_per_tick": round(fwd, 2), "targets": targets,
    }
    print(json.dumps({"bench": "cellspool", **results}, indent=2))
    table = Table(title="bench/cellspool (SQLite WAL, synchronous=FULL unless said)")
    for col in ("figure", "measured", "target"):
        table.add_column(col)
    table.add_row(f"spool write, transactions of {args.batch}", f"{rate:,.0f} envelopes/s", ">= 20,000/s")
    table.add_row("the same, synchronous=NORMAL", f"{normal:,.0f} envelopes/s", "-")
    table.add_row("one-envelope commits", f"{commits:,.0f}/s", "-")
    table.add_row("one-envelope commits, synchronous=NORMAL", f"{commits_normal:,.0f}/s", "-")
    if pg is not None:
        table.add_row(f"spool write on PostgreSQL 16, transactions of {args.batch}", f"{pg:,.0f} envelopes/s", "-")
    table.add_row(f"ticker, whole path, {args.sandboxes} sandboxes", f"{tick:.1f} us CPU/tick", "-")
    table.add_row("forwarder overhead (edge answers at once)", f"{fwd:.1f} us CPU/tick", "< 50 us")
    Console(stderr=True, width=120).print(table)
    raise SystemExit(0 if all(targets.values()) else 1)


if __name__ == "__main__":
    main()
