"""Service tests run on the in-memory adapters: no moto, and faults are injected through `Faults`."""

from __future__ import annotations

import pytest

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.archive import MemoryArchive
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.bootstrap import Container
from chalicelib.settings import Settings


@pytest.fixture
def memory(settings: Settings) -> MemoryStore:
    return MemoryStore(retention_seconds=settings.sample_retention_seconds)


@pytest.fixture
def svc(settings: Settings, memory: MemoryStore, clock: FixedClock) -> Container:
    return Container(settings=settings, store=memory, archive=MemoryArchive(), clock=clock)
