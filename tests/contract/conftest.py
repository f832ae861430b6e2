"""The adapters under contract: every test here runs once per adapter, with the same assertions."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.ports import BillingStore
from tests.conftest import PREFIX

RETENTION = 45 * 86400


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> BillingStore:
    """A BillingStore: MemoryStore, or DynamoStore on moto tables built from infra/template.json."""
    if request.param == "memory":
        return MemoryStore(retention_seconds=RETENTION)
    dynamodb: Any = request.getfixturevalue("dynamodb")
    return DynamoStore(dynamodb, PREFIX, RETENTION)
