"""What both benchmarks share: moto tables with the capacity accountant, a tick workload, the report."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from bench.capacity import Accountant
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.dynamodb.tables import create_tables, table_specs
from chalicelib.core.orgs import Org
from chalicelib.settings import Settings, load_settings
from tests.moto_patches import transactions_backed_up_once

PREFIX = "bench"
# 2026-11-25T00:00:00Z, a bucket boundary.
T0 = 1795564800
ENV = {
    "SHADOW": "false", "BILL_FROM": "0", "BUCKET_SECONDS": "3600", "GRACE_SECONDS": "600",
    "TABLE_PREFIX": PREFIX, "ARCHIVE_BUCKET": "bench-raw", "EVENT_SECRET": "bench-secret",
    "STRIPE_API_KEY": "sk_test_bench", "ROLLUP_LOOKBACK_BUCKETS": "2", "SECRETS_PARAMETER_PREFIX": "",
}


def settings(**overrides: str) -> Settings:
    return load_settings(ENV | overrides)


@contextmanager
def moto_store(orgs: list[Org]) -> Iterator[tuple[DynamoStore, Accountant, Any]]:
    """Fresh moto tables from infra/, orgs loaded, and an accountant counting from here on."""
    from moto import mock_aws

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(var, None)
    with transactions_backed_up_once(), mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        # Inside an enclosing mock (the test suite's, one per worker) moto keeps earlier tables: drop them.
        for name in client.list_tables()["TableNames"]:
            if name.startswith(PREFIX + "-"):
                client.delete_table(TableName=name)
        create_tables(client, PREFIX)
        accountant = Accountant.for_tables(table_specs(PREFIX))
        accountant.attach(client)
        accountant.enabled = False
        store = DynamoStore(client, PREFIX, settings().sample_retention_seconds)
        for org in orgs:
            store.put_org(org)
        accountant.enabled = True
        yield store, accountant, client


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Workload:
    """Pro sandboxes ticking every `period` s (fractional intervals), `hours` long from T0."""

    orgs: int
    sandboxes_per_org: int
    period: int
    hours: float
    seed: int = 1

    def org_records(self, unified_every: int = 2) -> list[Org]:
        return [
            Org(org_id(i), plan="pro", billing_mode="unified" if i % unified_every else "legacy",
                stripe_customer_id=f"cus_{hex_id(i, 14)}")
            for i in range(self.orgs)
        ]

    def ticks(self) -> list[dict[str, Any]]:
        rng = random.Random(self.seed)
        tiers = (1024, 4096, 8192, 16384)
        out = []
        end_of_run = T0 + self.hours * 3600
        for o in range(self.orgs):
            for s in range(self.sandboxes_per_org):
                mb = rng.choice(tiers)
                t = T0 + rng.random() * self.period
                while True:
                    interval = round(self.period + rng.random(), 6)
                    if t + interval > end_of_run:
                        break
                    t = round(t + interval, 6)
                    out.append(envelope(str(uuid.UUID(int=rng.getrandbits(128))), org_id(o),
                                        f"sbx-{hex_id(o * 1000 + s, 32)}", t, interval, mb))
        rng.shuffle(out)
        return out


def hex_id(n: int, length: int) -> str:
    """Deterministic ids as long as the cells' real ones, so item sizes (and units) are realistic."""
    return hashlib.sha256(str(n).encode()).hexdigest()[:length]


def org_id(n: int) -> str:
    return f"org_{hex_id(n, 24)}"


def envelope(event_id: str, org: str, sandbox: str, end: float, interval: float, mb: int) -> dict[str, Any]:
    return {"id": event_id, "type": "usage_tick", "sandbox_id": sandbox, "org_id": org, "plan": "pro",
            "worker_id": f"wrk-{sandbox[-12:]}", "cell_id": "cell-eu-west-1a", "timestamp": iso(end),
            "payload": {"interval_s": interval, "memory_mb": mb, "cpu_count": 2, "cost_cents": 0}}


def report(name: str, results: dict[str, Any], rows: list[tuple[str, str, str, str]]) -> None:
    """JSON on stdout (for machines), then a table on stderr (for people)."""
    sys.stdout.write(json.dumps({"bench": name, **results}, indent=2, default=str) + "\n")
    table = Table(title=f"bench/{name}")
    for column in ("figure", "edge", "naive / seed", "target"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(stderr=True, width=120).print(table)
