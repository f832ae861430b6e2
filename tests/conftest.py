"""Shared fixtures: moto tables built from infra/template.json, a fixed clock, signed requests."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import settings as hypothesis_settings
from moto import mock_aws

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.dynamodb.tables import create_tables, table_specs
from chalicelib.adapters.s3_archive import S3Archive
from chalicelib.bootstrap import Container
from chalicelib.core.hmac_auth import sign_body, sign_get
from chalicelib.settings import Settings, load_settings
from infra.merge import merge_template
from tests import moto_patches

# The rollup's scenarios: their fixtures reach tests/services and tests/integration alike.
pytest_plugins = ["tests.rollup_scenarios"]

# Hypothesis's 200 ms deadline per example measures the machine, not the code: on a laptop with every core
# busy it failed a property that holds (seen: tests/unit/test_cutover.py under a load of 6). Health checks stay.
hypothesis_settings.register_profile("edge-billing", deadline=None)
hypothesis_settings.load_profile("edge-billing")

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-event-secret"
PREFIX = "opensandbox-billing-test"
ARCHIVE = "opensandbox-billing-test-raw"
# 2026-11-25T00:00:00Z: a bucket boundary, so tests read in whole hours.
T0 = 1795564800

# mock_aws hides boto3's default session, so each boto3.client() would build a session and parse the
# service models again (~80 ms a client). Clients from one session per worker share the parsed models.
BOTO = boto3.session.Session(region_name="us-east-1")
moto_patches.install()  # see tests/moto_patches.py: a Query reads its partition, not the whole table

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
    # Few sample shards per bucket: every shard is a task and a query on moto (production default 32).
    "SAMPLE_SHARDS": "4",
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


@functools.cache
def aws_client(service: str) -> Any:
    """One client per service per worker: building one costs 3-6 ms, and the moto tests took two or three each."""
    return BOTO.client(service)


@pytest.fixture(scope="session")
def _tables(_moto: None) -> dict[str, list[str]]:
    client = aws_client("dynamodb")
    create_tables(client, PREFIX)
    return {spec["create"]["TableName"]: [k["AttributeName"] for k in spec["create"]["KeySchema"]]
            for spec in table_specs(PREFIX)}


@pytest.fixture
def dynamodb(aws: None, _tables: dict[str, list[str]]) -> Any:
    client = aws_client("dynamodb")
    if not set(_tables) <= moto_patches.table_names(BOTO.region_name):
        create_tables(client, PREFIX)  # a test dropped a table
    empty_tables(list(_tables))
    return client


def empty_tables(names: list[str]) -> None:
    moto_patches.empty_tables(names, BOTO.region_name)


_WORLDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def written_once(name: str, write: Callable[[], None]) -> None:
    """The tables as `write` leaves them: written through the API by a worker's first test that asks, put back
    in place for the next ones (moto_patches.restore_tables), where writing them was most of a test's cost.
    `write` must write the same each time (fixed clock, nothing from the test's parameters); the tables must
    be as they were the first time, or this fails rather than hand a test a world it would not have built."""
    names = [spec["create"]["TableName"] for spec in table_specs(PREFIX)]
    before = moto_patches.snapshot_tables(names, BOTO.region_name)
    if name not in _WORLDS:
        write()
        _WORLDS[name] = (before, moto_patches.snapshot_tables(names, BOTO.region_name))
        return
    assert before == _WORLDS[name][0], f"written_once({name!r}): the tables were not as the first time"
    moto_patches.restore_tables(_WORLDS[name][1], BOTO.region_name)


def empty_bucket(name: str) -> None:
    moto_patches.empty_bucket(name, aws_client("s3"))


@pytest.fixture
def s3(aws: None) -> Any:
    empty_bucket(ARCHIVE)
    return aws_client("s3")


@pytest.fixture
def store(dynamodb: Any, settings: Settings) -> DynamoStore:
    made = DynamoStore(dynamodb, PREFIX, settings.sample_retention_seconds, settings.SAMPLE_SHARDS)
    # A deployment that recorded shard counts from its start (as a new one does): the record of a bucket
    # well before any test's first sample. Without it, every unrecorded bucket in a rollup's look-back
    # counts as written before counts were recorded (32 shards, 32 tasks and queries each on moto).
    made._shards_for_write(T0 - 24 * 3600)
    return made


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 2 * 3600)


@pytest.fixture
def svc(settings: Settings, store: DynamoStore, s3: Any, clock: FixedClock) -> Container:
    """This test's container (DynamoDB and S3 on moto, a fixed clock): the app and the CLI are handed it."""
    return Container(settings=settings, store=store, archive=S3Archive(s3, ARCHIVE), clock=clock)


@pytest.fixture
def serve() -> Iterator[Callable[[Container], Any]]:
    """A test client of the edge's app built around a given container, as app.py builds one around its own."""
    from chalice.test import Client

    from chalicelib.entrypoints.api.edge_app import make_app

    def client(container: Container) -> Any:
        made = clients.enter_context(Client(make_app(container), stage_name="dev", project_dir=str(ROOT)))
        made.container = container  # for helpers that sign at the app's (injected) clock
        return made

    with ExitStack() as clients:
        yield client


@pytest.fixture
def client(svc: Container, serve: Callable[[Container], Any]) -> Any:
    return serve(svc)


@pytest.fixture
def run_cli(svc: Container) -> Callable[..., Any]:
    """The operator CLI handed this test's container, as `main()` hands it one built from the environment."""
    from typer.testing import CliRunner

    from chalicelib.entrypoints.cli import app as edge_cli
    from chalicelib.entrypoints.cli_output import Handed

    def invoke(args: list[str], container: Container | None = None, **kwargs: Any) -> Any:
        return CliRunner().invoke(edge_cli, args, obj=Handed(container or svc), **kwargs)

    return invoke


@functools.cache
def _click_command(app: Any) -> Any:
    import typer.main

    return typer.main.get_command(app)


@pytest.fixture(autouse=True, scope="session")
def _cli_commands_built_once() -> Iterator[None]:
    """Each Typer app's Click command built once per worker, for the edge's CLI and the cell kit's alike: Typer's
    CliRunner rebuilt the whole command tree (every signature and annotation) on each invoke, most of an
    in-process CLI test's time. A Click command serves any number of invocations, each with its own context,
    as `edge-billing` and `python -m cellkit` build theirs once."""
    import typer.testing

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", _click_command)
        yield


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


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    """`make package` for prod (`chalice package` with infra/merge.py's template), made once per test run,
    by the first test that needs it, in pytest's temp dir shared by the run's workers (a file lock: the
    others wait for it, then read it). Nothing is written to the checkout; chalice's dependency cache
    (.chalice/deployments, keyed by the requirements' hash) is kept beside pytest's temp dirs, so a
    later run reuses it (a fresh one takes ~9 s more)."""
    run = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        run = run.parent  # xdist: each worker's base temp is inside the run's
    work = run / "chalice-package"
    with (run / "chalice-package.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "out" / "sam.json").exists():
            shutil.rmtree(work, ignore_errors=True)  # a half-made one, from a worker that failed
            _package(work, cache=run.parent / "edge-billing-chalice-deployments")
    return {"path": work / "out" / "sam.json", "template": json.loads((work / "out" / "sam.json").read_text())}


def _package(work: Path, cache: Path) -> None:
    project = work / "project"
    project.mkdir(parents=True)
    for name in ("app.py", "requirements.txt", "chalicelib", ".chalice", "infra"):
        src = ROOT / name
        ignore = shutil.ignore_patterns("__pycache__", "deployments", "venv")
        (shutil.copytree(src, project / name, ignore=ignore) if src.is_dir() else shutil.copy(src, project / name))
    (project / "merge-template.json").write_text(json.dumps(merge_template("prod")))  # as `make package` does
    deployments = project / ".chalice" / "deployments"
    cache.mkdir(exist_ok=True)
    shutil.copytree(cache, deployments, dirs_exist_ok=True)
    env = os.environ | {"AWS_DEFAULT_REGION": "us-east-1", "EVENT_SECRET": "x"}
    chalice = Path(sys.executable).parent / "chalice"
    out = subprocess.run(
        [str(chalice), "package", "--stage", "prod", "--merge-template", "merge-template.json", str(work / "out")],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"chalice package failed: {out.stdout}{out.stderr}")
    for built in deployments.glob("*.zip"):
        if not (cache / built.name).exists():
            shutil.copy(built, cache / built.name)


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Any]:
    from stripe_emulator import start_in_thread

    server = start_in_thread()
    yield server
    server.stop()


@pytest.fixture(autouse=True, scope="session")
def _quick_stripe_retries() -> Iterator[None]:
    """stripe-python waits 0.5 s, then 1 s, ... (up to 5 s) before each network retry: a test counts the retries
    and their idempotency keys, not the seconds (~6 s of one worker's wall time in the leak sweep alone)."""
    from stripe._http_client import HTTPClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HTTPClient, "INITIAL_DELAY", 0.001)
        patch.setattr(HTTPClient, "MAX_DELAY", 0.01)
        yield


@pytest.fixture
def emulator(emulator_session: Any) -> Any:
    """A fresh Stripe emulator state per test (one server per session)."""
    emulator_session.app.e_reset(None)
    return emulator_session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The deployable template's tests are `make test-e2e`'s (`-m package`): `chalice package` is a real process
    # that, on a machine that never packaged, fetches the Lambda platform's wheels (~11 s of waiting there).
    for item in items:
        if "packaged" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.package)
    # Stripe test mode is opt-in: without a key these tests are deselected (not skipped), and we say so once.
    if os.environ.get("STRIPE_TEST_API_KEY"):
        return
    live = [i for i in items if i.get_closest_marker("stripe_live")]
    if live:
        config.hook.pytest_deselected(items=live)
        items[:] = [i for i in items if not i.get_closest_marker("stripe_live")]
        print(f"\n{len(live)} Stripe test-mode test(s) deselected: set STRIPE_TEST_API_KEY to run them")
