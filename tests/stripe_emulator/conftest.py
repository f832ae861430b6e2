from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorServer, start_in_thread


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def emu(emulator_server: EmulatorServer) -> EmulatorServer:
    control(emulator_server, "reset", {})
    return emulator_server


@pytest.fixture
def sc(emu: EmulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": emu.url}, max_network_retries=0)


def control(server: EmulatorServer, what: str, body: Any) -> Any:
    req = urllib.request.Request(f"{server.url}/_emulator/{what}", data=json.dumps(body).encode(), method="POST")
    return json.load(urllib.request.urlopen(req))


def read(server: EmulatorServer, what: str) -> Any:
    return json.load(urllib.request.urlopen(f"{server.url}/_emulator/{what}"))
