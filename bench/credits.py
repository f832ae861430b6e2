"""bench/credits: DynamoDB write units per free tick, end to end (ingest + the spend pass), beside pro ticks.

Free orgs' sandboxes tick every 20 s at the cell kit's rate (0.0004 cents per GB-second); the forwarder
delivers each minute's ticks in one batch, the spend pass runs every minute. The edge stores each free
tick once (one write) and writes an org's account only when one of its slots closes or the balance runs
out, so the units per tick stay near 1 however small the orgs. Beside it, the seed's design (a
conditional write on the balance per tick) and the same fleet on the pro plan.
Target (issue 22): <= 1.05 write units per free tick.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from bench.harness import T0, envelope, hex_id, iso, moto_store, org_id, report, settings
from chalicelib.adapters.dynamodb.credits import DynamoCredits, _tick_item
from chalicelib.core.credits import apply_late, free_tick, new_account
from chalicelib.core.envelopes import validate_batch
from chalicelib.core.orgs import Org
from chalicelib.services.credits import run_spend_pass
from chalicelib.services.ingest import ingest_batch

CENTS_PER_GB_SECOND = Decimal("0.0004")


@dataclass(frozen=True)
class FreeFleet:
    orgs: int
    sandboxes_per_org: int
    minutes: int
    seed: int = 3

    def org_records(self, plan: str) -> list[Org]:
        return [Org(org_id(i), plan=plan, billing_mode="unified") for i in range(self.orgs)]  # type: ignore[arg-type]

    def minutes_of_ticks(self) -> list[list[dict[str, Any]]]:
        """Per minute, the envelopes the forwarder delivers. No re-sends: a re-sent tick costs its one write
        again on every path alike (tests/simulation covers them); this counts the cost of a tick."""
        rng = random.Random(self.seed)
        out: list[list[dict[str, Any]]] = []
        phases = {(o, s): rng.random() * 20 for o in range(self.orgs) for s in range(self.sandboxes_per_org)}
        for m in range(self.minutes):
            batch = []
            for (o, s), phase in phases.items():
                for k in range(3):
                    end = T0 + m * 60 + phase + k * 20
                    env = envelope(f"{hex_id(o * 1000 + s, 8)}-{m}-{k}", org_id(o), f"sbx-{hex_id(o * 1000 + s, 32)}",
                                   end, 20.0, 1024)
                    env["payload"]["cost_cents"] = float(CENTS_PER_GB_SECOND * 20)
                    env["plan"] = "free"
                    batch.append(env)
            out.append(batch)
        return out


def free_cost(fleet: FreeFleet, design: str) -> dict[str, Any]:
    with moto_store(fleet.org_records("free")) as (store, accountant, client):
        credits = DynamoCredits(client, "bench")
        s = settings(FREE_TIER_SEED_CENTS="500")
        ticks = 0
        for m, batch in enumerate(fleet.minutes_of_ticks()):
            now = T0 + (m + 1) * 60 + 5
            items = json.loads(json.dumps(batch), parse_float=Decimal)
            if design == "edge":
                ingest_batch(items, "cell-bench", store, s, now, credits)
                run_spend_pass(store, credits, s, now + 10)
            else:
                naive_debits(items, credits, s, now)
            ticks += len({e["id"] for e in batch})
        distinct = fleet.orgs * fleet.sandboxes_per_org * 3 * fleet.minutes
        return {"ticks": distinct, "delivered": ticks, "wu": round(accountant.wu, 1),
                "wu_per_tick": round(accountant.wu / distinct, 4), "requests": dict(accountant.requests)}


def naive_debits(items: list[dict[str, Any]], credits: DynamoCredits, s: Any, now: int) -> None:
    """The straightforward exactly-once design: per tick a conditional ledger put (a replay is refused),
    then a compare-and-set on the balance (the seed did only the second, deduplicating by a window of
    1,024 ids, so a late re-send debited twice)."""
    for env in items:
        tick = free_tick(parse_tick(env), env["org_id"], s.sample_retention_seconds, 0)
        try:
            credits.client.put_item(TableName=credits.samples_table, Item=_tick_item(tick),
                                    ConditionExpression="attribute_not_exists(pk)")
        except ClientError:
            continue
        account = credits.accounts([env["org_id"]]).get(env["org_id"]) or new_account(env["org_id"], 500)
        credits.commit_account(apply_late(account, tick.cost_micro, now), account.version)


def parse_tick(env: dict[str, Any]) -> Any:
    validated = validate_batch([env], 3600, int(datetime.fromisoformat(env["timestamp"]).timestamp()) + 60,
                               45 * 86400)
    return validated.ticks[0][1]


def pro_cost(fleet: FreeFleet) -> float:
    with moto_store(fleet.org_records("pro")) as (store, accountant, _):
        for m, batch in enumerate(fleet.minutes_of_ticks()):
            for env in batch:
                env["plan"] = "pro"
            ingest_batch(json.loads(json.dumps(batch), parse_float=Decimal), "cell-bench", store, settings(),
                         T0 + (m + 1) * 60 + 5)
        return round(accountant.wu / (fleet.orgs * fleet.sandboxes_per_org * 3 * fleet.minutes), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=45)
    args = parser.parse_args()
    results: dict[str, Any] = {"rate_cents_per_gb_second": str(CENTS_PER_GB_SECOND), "started": iso(T0)}
    rows = []
    for per_org in (1, 3):
        fleet = FreeFleet(args.orgs, per_org, args.minutes)
        edge = free_cost(fleet, "edge")
        seed = free_cost(fleet, "naive") if per_org == 1 else None
        pro = pro_cost(fleet) if per_org == 1 else None
        results[f"{per_org}_per_org"] = {"fleet": vars(fleet), "edge": edge, "seed": seed, "pro_wu_per_tick": pro}
        rows.append((f"write units per free tick, {args.orgs} orgs x {per_org} sandbox(es), {args.minutes} min",
                     f"{edge['wu_per_tick']}" + (f" (pro tick: {pro})" if pro is not None else ""),
                     f"{seed['wu_per_tick']}" if seed else "-", "<= 1.05"))
    passed = {"wu_per_free_tick<=1.05": all(results[k]["edge"]["wu_per_tick"] <= 1.05
                                            for k in ("1_per_org", "3_per_org"))}
    results["targets"] = passed
    report("credits", results, rows)
    raise SystemExit(0 if all(passed.values()) else 1)


if __name__ == "__main__":
    main()
