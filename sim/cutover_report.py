"""`make run`'s report: per org and meter, ground truth, the cells before T, the edge from T, and Stripe."""

from __future__ import annotations

import time
from decimal import Decimal

from sim.api import EdgeClient, get_json
from sim.cutover_orgs import ORGS, US, Run
from sim.seam_fleet import SeamLoop
from sim.seam_report import BucketRow, RunReport, cell_gb_per_window, drift_rows
from sim.truth import (
    MeterEvent,
    PlanChange,
    attribute,
    billers_per_bucket,
    gb_us_per_bucket,
    mb_us_to_gb_s,
    owed,
    seam_lines,
)


def edge_gb_per_bucket(edge: EdgeClient, buckets: list[int], width: int) -> dict[int, Decimal]:
    out = {}
    for b in buckets:
        answer = edge.get("/internal/usage-parity", {"from": b, "to": b + width})
        for _ in range(30):  # a bucket the workers are still settling: 503, ask again shortly
            if answer.status != 503:
                break
            time.sleep(1.0)
            answer = edge.get("/internal/usage-parity", {"from": b, "to": b + width})
        out[b] = sum((Decimal(str(r["gb_seconds"])) for r in answer.body["orgs"]), Decimal(0))
    return out


def build_report(run: Run, fleet: SeamLoop, edge: EdgeClient, b0: int, end: int) -> RunReport:
    info, w = run.info, run.bucket
    events = [MeterEvent(e["identifier"], e["event_name"], e["customer"], Decimal(e["value"]), e["cancelled"])
              for e in get_json(info.stripe_url + "/_emulator/meter_events")["events"]]
    attributed = [attribute(e) for e in events if not e.cancelled]
    org_of = {c: o for o, c in run.customers.items()}
    totals = get_json(info.stripe_url + "/_emulator/totals")["totals"]
    stripe_sums = {(org_of[c], m): Decimal(v) for c, ms in totals.items() for m, v in ms.items()}
    modes = {o.org_id: o.mode for o in ORGS}
    initial = [PlanChange(o.org_id, 0, "free" if o.org_id == "stark" else o.plan) for o in ORGS]
    changes = initial + fleet.ledger.changes
    horizon = fleet.ledger.until(end * US)
    truth = owed(fleet.ledger.segments, changes, modes, horizon)  # type: ignore[arg-type]
    buckets = list(range(b0 - w, end + w, w))
    truth_gb = gb_us_per_bucket(fleet.ledger.segments, changes, w, horizon)
    edge_gb = edge_gb_per_bucket(edge, buckets, w)
    reports = {c.cell_id: c.reports for c in fleet.cells.values()}
    cell_gb = cell_gb_per_window(reports)
    billed = billers_per_bucket(attributed)
    rows = [BucketRow(b, mb_us_to_gb_s(truth_gb.get(b, 0)), edge_gb[b], cell_gb.get(b, Decimal(0)),
                      billed.get(b, [])) for b in buckets]
    requests = get_json(info.stripe_url + "/_emulator/requests")["requests"]
    costs = {"stripe_requests": requests,
             "meter_events": {"cells": sum(a.side != "edge" for a in attributed),
                              "edge": sum(a.side == "edge" and not a.late for a in attributed),
                              "edge_late_deltas": sum(a.late for a in attributed)},
             "rollup_runs": len(fleet.runs),
             # The cells' parity questions: answered, or 503 + Retry-After while the fan-out settled the bucket.
             "parity_answers": {c.cell_id: c.parity_answers for c in fleet.cells.values()},
             "forwarder": {c.cell_id: vars(c.cell.forwarder.stats) for c in fleet.cells.values() if c.cell.forwarder},
             "dynamodb_units": "not measured here (bench/rollup counts them per tick with the capacity accountant)"}
    report = RunReport(run.t, w, seam_lines(truth, attributed, stripe_sums, run.t), rows, drift_rows(reports),
                       run.cli, costs, {"actions": fleet.done, "refused_creates": fleet.refused,
                                        "problems": run.problems})
    return report
