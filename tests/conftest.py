"""Shared fixtures: moto tables built from infra/template.json, a fixed clock, signed requests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.dynamodb.tables import create_tables, table_specs
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.bootstrap import Services, use
from chalicelib.core.hmac_auth import sign_body, sign_get
from chalicelib.settings import Settings, current_settings, load_settings
from infra.merge import merge_template
from tests import moto_query

# The rollup's scenarios: their fixtures reach tests/services and tests/integration alike.
pytest_plugins = ["tests.rollup_scenarios"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-event-secret"
PREFIX = "opensandbox-billing-test"
ARCHIVE = "opensandbox-billing-test-raw"
# 2026-11-25T00:00:00Z: a bucket boundary, so tests read in whole hours.
T0 = 1795564800

# mock_aws hides boto3's default session, so each boto3.client() would build a session and parse the
# service models again (~80 ms a client). Clients from one session per worker share the parsed models.
BOTO = boto3.session.Session(region_name="us-east-1")
moto_query.install()  # see tests/moto_query.py: a Query reads its partition, not the whole table

BASE_ENV = {
    "SHADOW": "true",
    "BILL_FROM": "0",
    "BUCKET_SECONDS": "3600",
    "GRACE_SECONDS": "600",
    "WORKER_ENV": "dev",
    "TABLE_PREFIX": PREFIX,
    "ARCHIVE_BUCKET": ARCHIVE,
    "EVENT_SECRET": SECRET,
    "STRIPE_API_KEY": "sk_test_emulator",
    "STRIPE_WEBHOOK_SECRET": "whsec_test",
    "SESSION_JWT_SECRET": "jwt-test-secret-of-at-least-32-bytes",
    # Tests start a few hours after T0: a short first-run look-back keeps moto fast.
    "ROLLUP_LOOKBACK_BUCKETS": "4",
}


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The stage environment the app sees (tests may update it before building services)."""
    for key, value in BASE_ENV.items():
        monkeypatch.setenv(key, value)
    current_settings.cache_clear()
    return dict(BASE_ENV)


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="session")
def _moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def aws(_moto: None) -> Iterator[None]:
    """moto, one per worker: building the tables was most of a route test's cost. A test's own
    `mock_aws()` nests in it (moto resets nothing then); the tables are emptied before each test."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def _tables(_moto: None) -> dict[str, list[str]]:
    client = BOTO.client("dynamodb")
    create_tables(client, PREFIX)
    return {spec["create"]["TableName"]: [k["AttributeName"] for k in spec["create"]["KeySchema"]]
            for spec in table_specs(PREFIX)}


@pytest.fixture
def dynamodb(aws: None, _tables: dict[str, list[str]]) -> Any:
    client = BOTO.client("dynamodb")
    create_tables(client, PREFIX)  # a no-op, unless a test dropped a table
    empty_tables(list(_tables))
    return client


def empty_tables(names: list[str]) -> None:
    """Empty moto's tables in place. Scanning and deleting through the API cost ~8 % of the suite (in
    proportion to what the previous test wrote); moto keeps a table's items in one dict, so clearing it
    is free. tests/integration/test_moto_state.py checks this still empties what the API sees."""
    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID][BOTO.region_name].tables
    for name in names:
        tables[name].items.clear()


def empty_bucket(name: str) -> None:
    """Create the bucket if missing and empty it in place (same reason, same check as empty_tables)."""
    buckets = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets
    if name not in buckets:
        BOTO.client("s3").create_bucket(Bucket=name)
    buckets[name].keys.clear()


@pytest.fixture
def s3(aws: None) -> Any:
    empty_bucket(ARCHIVE)
    return BOTO.client("s3")


@pytest.fixture
def store(dynamodb: Any, settings: Settings) -> DynamoStore:
    return DynamoStore(dynamodb, PREFIX, settings.sample_retention_seconds)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 2 * 3600)


@pytest.fixture
def svc(settings: Settings, store: DynamoStore, s3: Any, clock: FixedClock) -> Iterator[Services]:
    services = Services(settings=settings, store=store, archive=S3Archive(s3, ARCHIVE), clock=clock)
    use(services)
    yield services
    use(None)


@pytest.fixture
def client(svc: Services) -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="dev", project_dir=os.path.dirname(os.path.dirname(__file__))) as c:
        yield c


def signed_post(body: Any, now: int, cell_id: str | None = "cell-a", secret: str = SECRET) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Timestamp": str(now), "X-Signature": sign_body(secret, now, raw)}
    if cell_id is not None:
        headers["X-Cell-Id"] = cell_id
    return {"body": raw, "headers": headers}


def signed_get(path: str, query: str, now: int, secret: str = SECRET) -> dict[str, Any]:
    return {"X-Timestamp": str(now), "X-Signature": sign_get(secret, now, path, query)}


def tick(
    event_id: str,
    org_id: str | None,
    ts: str,
    interval_s: Any = 20,
    memory_mb: int | None = 1024,
    plan: str | None = "pro",
    **payload: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"interval_s": interval_s, "cpu_count": 1, "cost_cents": 0, **payload}
    if memory_mb is not None:
        body["memory_mb"] = memory_mb
    return {
        "id": event_id,
        "type": "usage_tick",
        "sandbox_id": f"sbx-{org_id}",
        "org_id": org_id,
        "plan": plan,
        "worker_id": "worker-1",
        "cell_id": "cell-a",
        "payload": body,
        "timestamp": ts,
    }


def iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


PACKAGE_DIR = "EDGE_BILLING_TEST_PACKAGE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Start `chalice package` at once, in the background of the main process (an xdist controller
    mostly waits): the tests that read the template then find it made instead of each waiting for it."""
    if hasattr(config, "workerinput") or os.environ.get(PACKAGE_DIR):
        return  # a worker: the controller started it (workers inherit its environment)
    if config.getoption("markexpr", "") == "slow":
        return  # `make test-e2e`: wall-clock runs that need no template and no CPU taken from them
    work = Path(tempfile.mkdtemp(prefix="chalice-package-"))
    os.environ[PACKAGE_DIR] = str(work)
    threading.Thread(target=_package_in_background, args=(work,), name="chalice-package", daemon=True).start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(PACKAGE_DIR):
        shutil.rmtree(os.environ.pop(PACKAGE_DIR), ignore_errors=True)


def _package_in_background(work: Path) -> None:
    try:
        _package(work)
        (work / "done").write_text("")
    except BaseException as exc:  # reported by the fixture, in the test that needs the template
        (work / "failed").write_text(str(exc))


@pytest.fixture(scope="session")
def packaged() -> dict[str, Any]:
    """`make package` for prod (`chalice package` with infra/merge.py's template), made once per test run
    (see pytest_configure). Chalice's dependency cache (.chalice/deployments, keyed by the requirements'
    hash) is kept in the checkout between runs."""
    if not os.environ.get(PACKAGE_DIR):
        pytest.fail("the template is packaged for the main suite only (see pytest_configure)")
    work = Path(os.environ[PACKAGE_DIR])
    deadline = time.monotonic() + 600
    while not (work / "done").exists():
        assert not (work / "failed").exists(), (work / "failed").read_text()
        assert time.monotonic() < deadline, "chalice package did not finish in 10 minutes"
        time.sleep(0.1)
    return {"path": work / "out" / "sam.json", "template": json.loads((work / "out" / "sam.json").read_text())}


def _package(work: Path) -> None:
    project = work / "project"
    project.mkdir()
    for name in ("app.py", "requirements.txt", "chalicelib", ".chalice", "infra"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
    (project / "merge-template.json").write_text(json.dumps(merge_template()))  # as `make package` does
    env = os.environ | {"AWS_DEFAULT_REGION": "us-east-1", "EVENT_SECRET": "x"}
    chalice = Path(sys.executable).parent / "chalice"
    out = subprocess.run(
        [str(chalice), "package", "--stage", "prod", "--merge-template", "merge-template.json", str(work / "out")],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"chalice package failed: {out.stdout}{out.stderr}")
    cache = ROOT / ".chalice" / "deployments"
    cache.mkdir(exist_ok=True)
    for built in (project / ".chalice" / "deployments").glob("*.zip"):
        if not (cache / built.name).exists():
            shutil.copy(built, cache / built.name)


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Any]:
    from stripe_emulator import start_in_thread

    server = start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_session: Any) -> Any:
    """A fresh Stripe emulator state per test (one server per session)."""
    emulator_session.app.e_reset(None)
    return emulator_session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stripe test mode is opt-in: without a key these tests are deselected (not skipped), and we say so once.
    if os.environ.get("STRIPE_TEST_API_KEY"):
        return
    live = [i for i in items if i.get_closest_marker("stripe_live")]
    if live:
        config.hook.pytest_deselected(items=live)
        items[:] = [i for i in items if not i.get_closest_marker("stripe_live")]
        print(f"\n{len(live)} Stripe test-mode test(s) deselected: set STRIPE_TEST_API_KEY to run them")
