"""The composition root: builds the store, archive, clock and Stripe gateway from settings.

Handlers ask `services()` for their dependencies; tests and the fleet
simulation install their own with `use()` instead of patching modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.adapters.stripe_gateway import StripeAccountsGateway, StripeClientGateway, make_client
from chalicelib.ports import Archive, BillingStore, CellStore, Clock, MeterEventGateway
from chalicelib.settings import Settings, current_settings

# Fail fast and let the caller answer 503: the cell's forwarder retries the whole batch.
_BOTO = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)


@dataclass
class Services:
    settings: Settings
    store: BillingStore
    archive: Archive
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)

    def now(self) -> int:
        return self.clock.now()

    def stripe_gateway(self) -> MeterEventGateway:
        """Built on first use: routes that never touch Stripe need no Stripe key."""
        if "stripe" not in self.extras:
            self.extras["stripe"] = StripeClientGateway(make_client(self.settings))
        gateway: MeterEventGateway = self.extras["stripe"]
        return gateway

    def accounts_gateway(self) -> StripeAccountsGateway:
        """Catalog and provisioning calls to Stripe (built on first use, like the meter-event gateway)."""
        if "stripe_accounts" not in self.extras:
            self.extras["stripe_accounts"] = StripeAccountsGateway(make_client(self.settings))
        gateway: StripeAccountsGateway = self.extras["stripe_accounts"]
        return gateway

    def accounts(self) -> DynamoAccounts:
        """Catalog, webhook event ids and org plan transitions, in the same tables as `store`."""
        if "accounts" not in self.extras:
            client = getattr(self.store, "client", None) or boto3.client("dynamodb", config=_BOTO)
            self.extras["accounts"] = DynamoAccounts(client, self.settings.TABLE_PREFIX)
        accounts: DynamoAccounts = self.extras["accounts"]
        return accounts

    def cells(self) -> CellStore:
        """Parity reports and cell status, in the control table (store/dynamodb_cells.py)."""
        if "cells" not in self.extras:
            from chalicelib.adapters.dynamodb.cells import DynamoCells

            client = getattr(self.store, "client", None) or boto3.client("dynamodb", config=_BOTO)
            self.extras["cells"] = DynamoCells(client, self.settings.TABLE_PREFIX)
        cells: CellStore = self.extras["cells"]
        return cells


_current: Services | None = None


def build(settings: Settings, clock: Clock | None = None) -> Services:
    dynamodb = boto3.client("dynamodb", config=_BOTO)
    s3 = boto3.client("s3", config=_BOTO)
    return Services(
        settings=settings,
        store=DynamoStore(dynamodb, settings.TABLE_PREFIX, settings.sample_retention_seconds),
        archive=S3Archive(s3, settings.ARCHIVE_BUCKET),
        clock=clock or SystemClock(),
    )


def services() -> Services:
    global _current
    if _current is None:
        _current = build(current_settings())
    return _current


def use(custom: Services | None) -> None:
    """Install (or, with None, forget) the services every handler uses."""
    global _current
    _current = custom
