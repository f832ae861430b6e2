"""bench/cellfleet: parity drift per org-hour in a simulated fleet of cells, cell kit beside the seed.

Several cells, each with pro and free orgs whose sandboxes (1-16 GB) start,
resize and stop at random moments (mostly mid-hour); every cell ticks every
20 s plus up to 1 s of jitter, spools, and forwards through outages (503s and
network errors for tens of minutes). The edge side is the edge's own code
(chalicelib: HMAC verify, envelope validation, bucket splitting, GB-seconds),
with DynamoDB left out: samples are kept in a dict keyed like the table, so
resends count once. Per cell and settled hour, the cell kit's parity math
compares the cell's scale events with the edge's sums.

"seed" replays the seed's defects on the same fleet: whole-second ticks
(fraction lost), no tick at a resize or stop (the slice since the last tick
is lost), and the one-sided clip (an interval ending after the hour counts
whole). Target (issue 11): cell kit median < 0.1 %, worst well under 2 %.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.memory import MemoryStore
from cellkit.core.parity import compare, drift
from cellkit.core.ticker import TickPlan, plan_tick
from cellkit.core.usage import OrgRow, ScaleEvent, gb_seconds
from cellkit.ports import CellStore, HttpResponse, TransportError
from cellkit.services.forwarder import Forwarder
from cellkit.services.ticker import Ticker, _spool_item
from chalicelib.core.envelopes import parse_batch, validate_batch
from chalicelib.core.hmac_auth import AuthError, verify_body
from chalicelib.core.pricing import gb_seconds as edge_gb_seconds
from chalicelib.core.samples import samples_from_tick

T0 = 1795564800
US = 1_000_000
H = 3600
SECRET = "bench-secret"
SIZES = (1024, 4096, 8192, 16384)
LOG = logging.getLogger("cellkit.bench.fleet")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False


@dataclass
class EdgeSim:
    """POST /ingest the way the edge computes it; outages per cell as (from_us, to_us, kind)."""

    clock: ManualClock
    pro: set[str]
    outages: dict[str, list[tuple[int, int, str]]]
    samples: dict[tuple[str, int], tuple[str, Decimal]] = field(default_factory=dict)
    requests: int = 0
    failed: int = 0

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        self.requests += 1
        now_us = self.clock.now_us()
        cell = headers["X-Cell-Id"]
        for start, end, kind in self.outages.get(cell, []):
            if start <= now_us < end:
                self.failed += 1
                if kind == "network":
                    raise TransportError("connection refused")
                return HttpResponse(503, b'{"error":"store unavailable"}', {})
        raw = body or b""
        try:
            verify_body({k.lower(): v for k, v in headers.items()}, raw, SECRET, now_us // US)
        except AuthError as exc:
            return HttpResponse(exc.status, exc.message.encode(), {})
        validated = validate_batch(parse_batch(raw), 3600, now_us // US, 40 * 86400)
        assert not validated.rejected, validated.rejected
        for _, tick in validated.ticks:
            org = tick.envelope.org_id or ""
            if org not in self.pro:
                continue
            for s in samples_from_tick(tick, org, H, 40 * 86400, 0):
                self.samples[(s.event_id, s.bucket_start)] = (org, edge_gb_seconds(s.memory_mb, s.seconds))
        return HttpResponse(202, b"{}", {})

    def sums(self) -> dict[tuple[str, int], Decimal]:
        out: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
        for (_, bucket), (org, gbs) in self.samples.items():
            out[(org, bucket)] += gbs
        return out


class SeedTicker(Ticker):
    """The seed's ticker: whole seconds per tick (the fraction is lost), nothing at a resize or stop."""

    def tick(self) -> Any:
        now = self.clock.now_us()
        with self.store.transaction() as tx:
            for sbx in self.store.running_sandboxes(self.worker_id):
                plan = plan_tick(sbx, now, self.worker_id)
                if plan is None:
                    continue
                whole = plan.interval_us // US * US
                tx.change_sandbox(sbx, replace(sbx, last_tick_us=now))
                if whole:
                    tx.spool_put([_spool_item(TickPlan(sbx, now - whole, now), self.cell_id)])
        return None

    def _last_tick(self, sbx: Any, at_us: int) -> None:
        return None


def seed_cell_gb(events: list[ScaleEvent], org: str, start: int, end: int, now_us: int) -> Decimal:
    """The seed's one-sided clip: an interval that ends after the window counts from its start to its end."""
    mb_us = 0
    for ev in events:
        if ev.org_id != org:
            continue
        stop = ev.ended_us if ev.ended_us is not None else now_us
        mb_us += ev.memory_mb * max(0, stop - max(ev.started_us, start * US))
    return gb_seconds(mb_us)


@dataclass(frozen=True)
class Plan:
    """One cell's workload: lifecycle changes (time, kind, sandbox, org, memory) and outages."""

    changes: list[tuple[int, str, str, str, int]]
    outages: list[tuple[int, int, str]]


def workload(rng: random.Random, cell: str, orgs: list[str], hours: int, per_org: int) -> Plan:
    changes: list[tuple[int, str, str, str, int]] = []
    end = (T0 + hours * H) * US
    for org in orgs:
        for i in range(per_org):
            sid = f"{cell}-{org}-{i}"
            start = (T0 * US) + rng.randint(0, (hours - 1) * H * US)
            life = rng.randint(10 * 60 * US, 4 * H * US)
            changes.append((start, "start", sid, org, rng.choice(SIZES)))
            for _ in range(rng.randint(0, 2)):
                at = start + rng.randint(1, life)
                if at < end:
                    changes.append((at, "resize", sid, org, rng.choice(SIZES)))
            if start + life < end:
                changes.append((start + life, "stop", sid, org, 0))
    changes.sort(key=lambda c: (c[0], c[1] != "start"))
    outages = []
    for kind in ("503", "network"):
        at = (T0 * US) + rng.randint(0, (hours - 1) * H * US)
        outages.append((at, at + rng.randint(15 * 60, 45 * 60) * US, kind))
    return Plan(changes, outages)


def apply(ticker: Ticker, change: tuple[int, str, str, str, int], orgs: Mapping[str, OrgRow]) -> None:
    at, kind, sid, org, mb = change
    running = ticker.store.sandbox(sid)
    if kind == "start":
        ticker.start(sid, org, orgs[org].plan, mb, max(1, mb // 2048), at)
    elif running is not None and running.status == "running":
        if kind == "resize":
            ticker.resize(sid, mb, max(1, mb // 2048), at)
        else:
            ticker.stop(sid, at)


def run_cell(ticker: Ticker, fwd: Forwarder, clock: ManualClock, plan: Plan, orgs: Mapping[str, OrgRow],
             rng: random.Random, until_us: int) -> None:
    changes = list(plan.changes)
    t = T0 * US + rng.randint(0, 20 * US)
    while t <= until_us:
        while changes and changes[0][0] <= t:
            clock.set(changes[0][0])
            apply(ticker, changes.pop(0), orgs)
        clock.set(t)
        ticker.tick()
        fwd.pump()
        t += 20 * US + rng.randint(0, 999_999)
    fwd.drain()


@dataclass
class Outcome:
    drifts: list[Decimal] = field(default_factory=list)
    seed_drifts: list[Decimal] = field(default_factory=list)
    seed_ticker_drifts: list[Decimal] = field(default_factory=list)
    ticks: int = 0
    posts: int = 0
    retries: int = 0


def simulate(cells: int, orgs_per_cell: int, per_org: int, hours: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    out = Outcome()
    for mode in ("kit", "seed"):
        clock = ManualClock(T0 * US)
        all_orgs: dict[str, OrgRow] = {}
        plans, stores = {}, {}
        prng = random.Random(seed)  # the same fleet for both modes
        for c in range(cells):
            cell = f"cell-{c}"
            orgs = [f"org-{c}-{o}" for o in range(orgs_per_cell)]
            for o, org in enumerate(orgs):
                all_orgs[org] = OrgRow(org, "free" if o % 4 == 3 else "pro", "unified")
            plans[cell] = workload(prng, cell, orgs, hours, per_org)
        edge = EdgeSim(clock, {o for o, r in all_orgs.items() if r.plan == "pro"},
                       {cell: p.outages for cell, p in plans.items()})
        for cell, plan in plans.items():
            store: CellStore = MemoryStore()
            for row in all_orgs.values():
                store.put_org(row)
            cls = Ticker if mode == "kit" else SeedTicker
            ticker = cls(store, cell, "w1", clock, LOG)
            client = EdgeClient("http://edge", SECRET, cell, edge, clock)
            fwd = Forwarder(store, client, clock, lambda _: None, LOG, random.Random(rng.random()))
            clock.set(T0 * US)
            run_cell(ticker, fwd, clock, plan, all_orgs, random.Random(seed + 1), (T0 + hours * H + 600) * US)
            stores[cell] = store
            out.posts += fwd.stats.posts
            out.retries += fwd.stats.retries
        sums = edge.sums()
        if mode == "kit":
            out.ticks = len({k[0] for k in edge.samples})
        for cell, store in stores.items():
            for h in range(hours):
                start, end = T0 + h * H, T0 + (h + 1) * H
                events = store.scale_events(start * US, end * US)
                mine = {o for o in all_orgs if o.startswith(f"org-{cell.split('-')[1]}-")}
                edge_side = {o: v for (o, b), v in sums.items() if b == start and o in mine}
                now_us = clock.now_us()
                report = compare(cell, (start, end), events, edge_side, all_orgs, now_us)
                if mode == "kit":
                    out.drifts += [abs(o.drift) for o in report.orgs]
                else:
                    out.seed_ticker_drifts += [abs(o.drift) for o in report.orgs]
                    pro = sorted({e.org_id for e in events if all_orgs[e.org_id].plan == "pro"} | set(edge_side))
                    out.seed_drifts += [abs(drift(seed_cell_gb(events, o, start, end, now_us),
                                                  edge_side.get(o, Decimal(0)))) for o in pro]
    return out


def pct(value: Decimal) -> str:
    return f"{value * 100:.4f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--orgs", type=int, default=8, help="orgs per cell (every fourth is free)")
    parser.add_argument("--sandboxes", type=int, default=3, help="sandboxes per org")
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    o = simulate(args.cells, args.orgs, args.sandboxes, args.hours, args.seed)
    med, worst = statistics.median(o.drifts), max(o.drifts)
    smed, sworst = statistics.median(o.seed_drifts), max(o.seed_drifts)
    tmed, tworst = statistics.median(o.seed_ticker_drifts), max(o.seed_ticker_drifts)
    targets = {"median<0.1%": med < Decimal("0.001"), "worst<2%": worst < Decimal("0.02")}
    results: dict[str, Any] = {
        "fleet": vars(args), "org_hours": len(o.drifts), "ticks": o.ticks, "posts": o.posts,
        "retries_through_outages": o.retries,
        "cellkit": {"median_drift": str(med), "worst_drift": str(worst)},
        "seed_ticker_only": {"median_drift": str(tmed), "worst_drift": str(tworst)},
        "seed": {"median_drift": str(smed), "worst_drift": str(sworst), "org_hours": len(o.seed_drifts)},
        "targets": targets,
    }
    print(json.dumps({"bench": "cellfleet", **results}, indent=2))
    table = Table(title=f"bench/cellfleet: |drift| per pro org-hour ({len(o.drifts)} org-hours)")
    for col in ("figure", "cell kit", "seed ticker, kit clip", "seed ticker + seed clip", "target"):
        table.add_column(col)
    table.add_row("median", pct(med), pct(tmed), pct(smed), "< 0.1 %")
    table.add_row("worst", pct(worst), pct(tworst), pct(sworst), "well under 2 %")
    table.add_row("forwarder retries through outages", str(o.retries), "-", "-", "all delivered")
    Console(stderr=True, width=120).print(table)
    raise SystemExit(0 if all(targets.values()) else 1)


if __name__ == "__main__":
    main()
