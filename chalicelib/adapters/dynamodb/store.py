"""The DynamoDB adapter of the billing store: one class per concern, composed here.

Key layout and every access pattern: docs/data-model.md."""

from __future__ import annotations

from chalicelib.adapters.dynamodb.control import ControlRecords
from chalicelib.adapters.dynamodb.orgs import OrgRecords
from chalicelib.adapters.dynamodb.outbox import OutboxRecords
from chalicelib.adapters.dynamodb.quarantine import QuarantineRecords
from chalicelib.adapters.dynamodb.samples import SampleRecords
from chalicelib.ports import BillingStore


class DynamoStore(OrgRecords, SampleRecords, QuarantineRecords, ControlRecords, OutboxRecords, BillingStore):
    """Every BillingStore method, over the samples, orgs, outbox and control tables."""
