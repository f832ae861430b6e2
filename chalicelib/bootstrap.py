"""The composition root: builds every adapter from settings into a `Container` that hands the services their ports.

No module global holds one. Whoever starts the product builds it and hands it on: app.py builds one per app at
cold start (`from_environment`) for the routes, middlewares and schedules (entrypoints/api/edge_app.py); the
operator CLI builds one per command on first use, unless its caller handed it one; tests and the simulations
build their own (the in-memory adapters, fakes, moto). Stripe gateways are built on first use, so routes that
never touch Stripe need no Stripe key.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.config import Config

from chalicelib.adapters.cell_push import HttpCellPusher
from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.dynamodb.accounts import DynamoAccounts
from chalicelib.adapters.dynamodb.cells import DynamoCells
from chalicelib.adapters.dynamodb.credits import DynamoCredits
from chalicelib.adapters.dynamodb.meter_errors import DynamoMeterErrors
from chalicelib.adapters.dynamodb.parallel import OUTBOX_PUTS_AT_ONCE
from chalicelib.adapters.dynamodb.seam import DynamoSeam
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.dynamodb.tables import create_tables as create_stage_tables
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.adapters.stripe_events import StripeEventsGateway, StripeWebhookVerifier
from chalicelib.adapters.stripe_gateway import (
    StripeAccountsGateway,
    StripeClientGateway,
    StripeCutoverGateway,
    make_client,
)
from chalicelib.credit_ports import CellPusher, CreditStore
from chalicelib.operator_ports import FreeStatus, MeterErrorGateway, MeterErrorStore, WebhookVerifier
from chalicelib.ports import AccountStore, Archive, BillingStore, CellStore, Clock, GroupedQueue, SeamReader, TaskQueue
from chalicelib.services.credits import CreditFreeStatus
from chalicelib.settings import Settings, load_settings
from chalicelib.stripe_ports import CutoverStripe, MeterEventGateway, StripeAccounts

# Fail fast and let the caller answer 503: the cell's forwarder retries the whole batch.
_BOTO = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)


@dataclass
class Container:
    """Every port of one app (or one command), typed. Left None, a DynamoDB or Stripe adapter is built on first use."""

    settings: Settings
    store: BillingStore
    archive: Archive
    clock: Clock
    account_store: AccountStore | None = None
    cell_store: CellStore | None = None
    seam_reader: SeamReader | None = None
    meter_gateway: MeterEventGateway | None = None
    account_gateway: StripeAccounts | None = None
    cutover_gateway: CutoverStripe | None = None
    meter_error_store: MeterErrorStore | None = None
    meter_error_gateway: MeterErrorGateway | None = None
    webhook_verifier: WebhookVerifier | None = None
    free_status: FreeStatus | None = None
    credit_store: CreditStore | None = None
    cell_pusher: CellPusher | None = None
    task_queue: TaskQueue | None = None
    send_task_queue: GroupedQueue | None = None

    def now(self) -> int:
        return self.clock.now()

    def _dynamo(self) -> DynamoStore:
        if not isinstance(self.store, DynamoStore):
            raise TypeError("a non-DynamoDB store needs its account, cell and seam adapters given explicitly")
        return self.store

    def stripe_gateway(self) -> MeterEventGateway:
        if self.meter_gateway is None:
            self.meter_gateway = StripeClientGateway(make_client(self.settings))
        return self.meter_gateway

    def rollup_queue(self) -> TaskQueue | None:
        """SQS when ROLLUP_QUEUE_URL is set (built on first use); None: the run drains its own tasks."""
        if self.task_queue is None and self.settings.ROLLUP_QUEUE_URL:
            from chalicelib.adapters.sqs_queue import SqsQueue

            self.task_queue = SqsQueue(boto3.client("sqs", config=_BOTO), self.settings.ROLLUP_QUEUE_URL)
        return self.task_queue

    def send_queue(self) -> GroupedQueue | None:
        """The send's FIFO queue when SEND_QUEUE_URL is set (built on first use); None: the run sends itself."""
        if self.send_task_queue is None and self.settings.SEND_QUEUE_URL:
            from chalicelib.adapters.sqs_queue import SqsQueue

            self.send_task_queue = SqsQueue(boto3.client("sqs", config=_BOTO), self.settings.SEND_QUEUE_URL)
        return self.send_task_queue

    def accounts_gateway(self) -> StripeAccounts:
        """Catalog and provisioning calls to Stripe."""
        if self.account_gateway is None:
            self.account_gateway = StripeAccountsGateway(make_client(self.settings))
        return self.account_gateway

    def cutover_stripe(self) -> CutoverStripe:
        if self.cutover_gateway is None:
            self.cutover_gateway = StripeCutoverGateway(make_client(self.settings))
        return self.cutover_gateway

    def events_gateway(self) -> MeterErrorGateway:
        """Stripe's thin events (meter error reports): verified, then fetched."""
        if self.meter_error_gateway is None:
            self.meter_error_gateway = StripeEventsGateway(make_client(self.settings))
        return self.meter_error_gateway

    def webhook_signatures(self) -> WebhookVerifier:
        """Stripe's snapshot-event signatures (POST /webhooks/stripe), checked by stripe-python."""
        if self.webhook_verifier is None:
            self.webhook_verifier = StripeWebhookVerifier()
        return self.webhook_verifier

    def meter_errors(self) -> MeterErrorStore:
        """Stripe's meter error reports, in the control table."""
        if self.meter_error_store is None:
            self.meter_error_store = DynamoMeterErrors(self._dynamo().client, self.settings.TABLE_PREFIX)
        return self.meter_error_store

    def free(self) -> FreeStatus:
        """The free tier's halts and lowest balances, read from its credit store."""
        if self.free_status is None:
            self.free_status = CreditFreeStatus(self.credits())
        return self.free_status

    def accounts(self) -> AccountStore:
        """Catalog, webhook event ids and org plan transitions, in the same tables as `store`."""
        if self.account_store is None:
            self.account_store = DynamoAccounts(self._dynamo().client, self.settings.TABLE_PREFIX)
        return self.account_store

    def cells(self) -> CellStore:
        """Parity reports and cell status, in the control table."""
        if self.cell_store is None:
            self.cell_store = DynamoCells(self._dynamo().client, self.settings.TABLE_PREFIX)
        return self.cell_store

    def credits(self) -> CreditStore:
        """The free tier: tick ledger (samples table), accounts, halted list, notices (control table)."""
        if self.credit_store is None:
            self.credit_store = DynamoCredits(self._dynamo().client, self.settings.TABLE_PREFIX)
        return self.credit_store

    def pusher(self) -> CellPusher:
        """Signed halt-org / resume-org pushes to the cells' base_urls."""
        if self.cell_pusher is None:
            self.cell_pusher = HttpCellPusher(self.settings.secret("EVENT_SECRET"), self.now)
        return self.cell_pusher

    def seam(self) -> SeamReader:
        """The outbox rows and sample cells around the cutover's T."""
        if self.seam_reader is None:
            self.seam_reader = DynamoSeam(self._dynamo())
        return self.seam_reader


def build(settings: Settings, clock: Clock | None = None) -> Container:
    # A connection per conditional put in flight (the reducer's outbox rows; botocore keeps 10 by default).
    dynamodb = boto3.client("dynamodb", config=_BOTO.merge(Config(max_pool_connections=OUTBOX_PUTS_AT_ONCE)))
    s3 = boto3.client("s3", config=_BOTO)
    return Container(
        settings=settings,
        store=DynamoStore(dynamodb, settings.TABLE_PREFIX, settings.sample_retention_seconds,
                          settings.SAMPLE_SHARDS),
        archive=S3Archive(s3, settings.ARCHIVE_BUCKET),
        clock=clock or SystemClock(),
    )


def create_tables(prefix: str) -> list[str]:
    """The stage's tables at the configured endpoint, each created unless it exists (`edge-billing tables create`)."""
    return create_stage_tables(boto3.client("dynamodb"), prefix)


def from_environment() -> Container:
    """The container of the stage this process runs in: its settings from the environment (a bad flag stops it
    here, naming the flag), DynamoDB and S3 clients, the system clock."""
    return build(load_settings())
