"""The local stack: moto (DynamoDB, S3, SQS) in server mode, the Stripe emulator, `chalice local`, and the
rollup's and the send's worker pollers (sim/rollup_poller.py: the SQS event source mappings `chalice local`
does not run).

`python -m sim.stack up|down|status`. Everything binds to loopback on free
ports recorded in `.local/stack.json`, so two checkouts (or a test and a
developer) never fight over a port. Secrets are generated per stack and kept
in `.local/`, never in the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import boto3
import typer

from chalicelib.adapters.dynamodb.tables import create_tables

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
STATE_FILE = STATE_DIR / "stack.json"
STAGE = "local"
REGION = "us-east-1"
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack lives and the secrets it was started with."""

    moto_url: str
    stripe_url: str
    api_url: str
    table_prefix: str
    archive_bucket: str
    event_secret: str
    stripe_api_key: str
    webhook_secret: str
    jwt_secret: str
    pids: dict[str, int]
    events_secret: str = ""  # the emulator's event destination (meter error reports) signs with it
    queue_url: str = ""
    send_queue_url: str = ""

    def app_env(self) -> dict[str, str]:
        """The environment the app (and the operator CLI) needs to talk to this stack."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "EVENT_SECRET": self.event_secret,
            "STRIPE_API_KEY": self.stripe_api_key,
            "STRIPE_API_BASE": self.stripe_url,
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "SESSION_JWT_SECRET": self.jwt_secret,
            "STRIPE_EVENTS_SECRET": self.events_secret,
            "ROLLUP_QUEUE_URL": self.queue_url,
            "SEND_QUEUE_URL": self.send_queue_url,
        }

    def cli_env(self) -> dict[str, str]:
        """app_env plus the stage flags, for `python -m chalicelib.cli` against this stack."""
        stage = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]
        return stage["environment_variables"] | self.app_env()


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load() -> StackInfo | None:
    if not STATE_FILE.exists():
        return None
    return StackInfo(**json.loads(STATE_FILE.read_text()))


def alive(pid: int) -> bool:
    # A child of this process that exited stays a zombie (and answers signal 0) until reaped: reap it.
    with contextlib.suppress(ChildProcessError):  # not our child: the checks below tell
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie someone else has not reaped yet (in a container, PID 1 may never) is not running either.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def running() -> StackInfo | None:
    """The recorded stack if every one of its processes is still alive."""
    info = load()
    if info is None or not all(alive(pid) for pid in info.pids.values()):
        return None
    return info


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> int:
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        # A new session per child: `down` kills the whole process group (chalice local forks).
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def _wait_http(name: str, url: str, pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{name} exited while starting; see {STATE_DIR / 'logs' / (name + '.log')}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: the server is up
        except OSError:
            time.sleep(0.25)
    raise StackError(f"{name} did not answer at {url} within {START_TIMEOUT_S:.0f} s")


def _provision_aws(info: StackInfo) -> tuple[str, str]:
    """Tables, bucket, the rollup's task queue and the send's FIFO queue; returns the queues' URLs."""
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    create_tables(session.client("dynamodb", endpoint_url=info.moto_url), info.table_prefix)
    session.client("s3", endpoint_url=info.moto_url).create_bucket(Bucket=info.archive_bucket)
    sqs = session.client("sqs", endpoint_url=info.moto_url)
    created = sqs.create_queue(QueueName="edge-billing-rollup-tasks", Attributes={"VisibilityTimeout": "20"})
    url: str = created["QueueUrl"]
    send = sqs.create_queue(QueueName="edge-billing-send-tasks.fifo",
                            Attributes={"FifoQueue": "true", "VisibilityTimeout": "20"})
    return url, str(send["QueueUrl"])


def _register_event_destination(info: StackInfo) -> None:
    """Stripe's meter error reports go to the app's POST /webhooks/stripe/events (docs/stripe.md), signed with
    the destination's secret: the emulator reports meter events for customers it does not hold."""
    body = json.dumps({"url": info.api_url + "/webhooks/stripe/events", "secret": info.events_secret}).encode()
    request = urllib.request.Request(info.stripe_url + "/_emulator/event_destinations", body, method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def up() -> StackInfo:
    """Start the stack (or return the one already running)."""
    current = running()
    if current is not None:
        return current
    down(quiet=True)
    stage = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]["environment_variables"]
    ports = {name: free_port() for name in ("moto", "stripe", "api")}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STRIPE_"))}
    py = sys.executable
    pids: dict[str, int] = {}
    info = StackInfo(
        moto_url=f"http://127.0.0.1:{ports['moto']}",
        stripe_url=f"http://127.0.0.1:{ports['stripe']}",
        api_url=f"http://127.0.0.1:{ports['api']}",
        table_prefix=stage["TABLE_PREFIX"],
        archive_bucket=stage["ARCHIVE_BUCKET"],
        event_secret=secrets.token_hex(16),
        stripe_api_key="sk_test_local_" + secrets.token_hex(8),
        webhook_secret="whsec_" + secrets.token_hex(16),
        jwt_secret=secrets.token_hex(16),
        pids=pids,
        events_secret="whsec_" + secrets.token_hex(16),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        pids["moto"] = _spawn("moto", [py, "-m", "sim.moto_server", "127.0.0.1", str(ports["moto"])], base_env)
        pids["stripe"] = _spawn("stripe", [py, "-m", "stripe_emulator", "--port", str(ports["stripe"])], base_env)
        _wait_http("moto", info.moto_url + "/moto-api/", pids["moto"], deadline)
        _wait_http("stripe", info.stripe_url + "/_emulator/totals", pids["stripe"], deadline)
        rollup_queue, send_queue = _provision_aws(info)
        info = replace(info, queue_url=rollup_queue, send_queue_url=send_queue)  # the same pids dict, filled below
        _register_event_destination(info)
        pids["api"] = _spawn("api", _api_argv(str(ports["api"])), base_env | info.app_env())
        pids["rollup_worker"] = _spawn("rollup_worker", [py, "-m", "sim.rollup_poller"], base_env | info.app_env())
        # One customer at a time: moto answers one request at a time, and the cells' parity GETs wait behind it.
        pids["send_worker"] = _spawn("send_worker", [py, "-m", "sim.rollup_poller", "send"],
                                     base_env | info.app_env() | {"SEND_WORKER_THREADS": "1"})
        _wait_http("api", info.api_url + "/health", pids["api"], deadline)
    except BaseException:
        _kill_all(pids)
        raise
    STATE_DIR.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps(asdict(info), indent=2))
    STATE_FILE.chmod(0o600)
    return info


def _api_argv(port: str) -> list[str]:
    chalice = str(Path(sys.executable).parent / "chalice")
    return [chalice, "local", "--no-autoreload", "--stage", STAGE, "--host", "127.0.0.1", "--port", port]


def restart_app() -> StackInfo | None:
    """Restart only `chalice local`, so it reads .chalice/config.json again (the cutover's arm and
    rollback); tables, emulator state and secrets stay. None when no stack is running."""
    info = running()
    if info is None:
        return None
    _kill_all({"api": info.pids["api"]})
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STRIPE_"))}
    pids = dict(info.pids)
    pids["api"] = _spawn("api", _api_argv(info.api_url.rsplit(":", 1)[1]), base_env | info.app_env())
    _wait_http("api", info.api_url + "/health", pids["api"], time.monotonic() + START_TIMEOUT_S)
    restarted = StackInfo(**(asdict(info) | {"pids": pids}))
    STATE_FILE.write_text(json.dumps(asdict(restarted), indent=2))
    return restarted


def _kill_all(pids: dict[str, int]) -> None:
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                continue
    # SIGKILL is delivered asynchronously: wait until the kernel has ended (and we have reaped) each one.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
        time.sleep(0.05)


def down(quiet: bool = False) -> None:
    info = load()
    if info is not None:
        _kill_all(info.pids)
        STATE_FILE.unlink(missing_ok=True)
    if not quiet:
        print("stack stopped" if info else "no stack recorded")


cli = typer.Typer(help="The local stack: moto server, Stripe emulator, chalice local.", no_args_is_help=True)


@cli.command("up")
def up_command() -> None:
    """Start the stack and print where it listens."""
    try:
        info = up()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print_status(info)


@cli.command("down")
def down_command() -> None:
    """Stop every process of the stack."""
    down()


@cli.command("status")
def status_command() -> None:
    """Print the stack's URLs and how to point the operator CLI at it."""
    info = running()
    if info is None:
        print("no stack running (python -m sim.stack up)")
        raise typer.Exit(1)
    print_status(info)


def print_status(info: StackInfo) -> None:
    print(f"api     {info.api_url}\nstripe  {info.stripe_url}\nmoto    {info.moto_url}")
    print("operator CLI against it:  eval \"$(python -m sim.stack env)\" && python -m sim.operator --help")


@cli.command("env")
def env_command() -> None:
    """Shell exports for the operator CLI (flags of the local stage plus endpoints and secrets)."""
    info = running()
    if info is None:
        print("no stack running (python -m sim.stack up)", file=sys.stderr)
        raise typer.Exit(1)
    for key, value in info.cli_env().items():
        print(f"export {key}='{value}'")


if __name__ == "__main__":
    cli()
