"""The local stack's stand-in for the SQS event source mappings of the worker Lambdas: the rollup's and the send's.

`chalice local` runs no SQS handlers, so this process does what Lambda's poller does on AWS: poll one
task queue (moto's SQS), hand each batch of up to 10 records to the same handler the worker Lambda
runs (`chalicelib.entrypoints.rollup_worker.on_sqs_records`, or `send_worker.on_sqs_records` for the
send's FIFO queue, where moto hands out one message of a customer's group at a time), and delete every
message the answer does not name in `batchItemFailures` (those come back after the visibility timeout).

The stage's flags are read from .chalice/config.json before each batch, as a redeployed worker would
see them: `cutover arm` rewrites SHADOW and BILL_FROM and restarts `chalice local`, and the workers'
rows must follow. Usage: python -m sim.rollup_poller [rollup|send] (environment: the stack's, sim/stack.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3

from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.bootstrap import Container, build
from chalicelib.entrypoints import rollup_worker, send_worker
from chalicelib.ports import StoreUnavailable
from chalicelib.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("sim.rollup_poller")


def stage_env() -> dict[str, str]:
    stage = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["local"]["environment_variables"]
    return dict(os.environ) | stage


Handler = Callable[[Container, Sequence[dict[str, Any]]], dict[str, Any]]
# Which queue (its URL's variable), which Lambda's handler, and the wait between empty polls: the rollup's
# tasks are picked up at once (a run waits for its buckets); the send's a second later is soon enough.
QUEUES: dict[str, tuple[str, Handler, float]] = {
    "rollup": ("ROLLUP_QUEUE_URL", rollup_worker.on_sqs_records, 0.25),
    "send": ("SEND_QUEUE_URL", send_worker.on_sqs_records, 1.0),
}


def main(which: str = "rollup") -> None:
    variable, on_sqs_records, idle = QUEUES[which]
    queue = SqsQueue(boto3.client("sqs"), os.environ[variable])
    flags: dict[str, str] = {}
    worker: Container | None = None
    while True:
        env = stage_env()
        if worker is None or env != flags:
            worker = build(load_settings(env))  # the flags changed (arm, rollback): a new deployment of the worker
            flags = env
        try:
            # No long poll: the local moto answers one request at a time (sim/moto_server.py), and a
            # ReceiveMessage waiting for messages would hold every other request of the stack behind it.
            # A quarter of a second between empty polls: a bucket handed over by a run (or a parity 503) is
            # picked up at once, and four cheap requests a second hardly load the one-at-a-time server.
            batch = queue.receive(10)
            if not batch:
                time.sleep(idle)
                continue
            answer = on_sqs_records(worker, [{"messageId": receipt, "body": body} for receipt, body in batch])
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            queue.delete([receipt for receipt, _ in batch if receipt not in failed])
        except StoreUnavailable as exc:  # moto restarting with the stack: try again
            log.warning("%s_poller_retry: %s", which, exc)
            time.sleep(0.5)


if __name__ == "__main__":
    main(*sys.argv[1:2])
