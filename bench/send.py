"""The send fanned out: CPU per Stripe call, measured; calls/s against Lambda concurrency and Stripe's limit, modelled.

Measured on this machine (CPU seconds, `time.process_time`):
- the COORDINATOR per pending row (read the queue index, plan, one task per customer and chunk);
- the WORKER per row (read the row, send, conditional move), on the in-memory store with a Stripe
  that answers at once: the edge's own CPU per call;
- stripe-python per `meter_events.create` (request encoding and answer parsing, its HTTP client
  stubbed: no network), the rest of a call's CPU on the Lambda;
- overlap: one worker invocation's calls/s over 10 customers when every Stripe call takes `--latency-ms`
  (sleeping, as a network wait does), against the model's threads / latency.

Modelled (docs/capacity.md "Send"): in flight = Lambda concurrency x customers served per invocation;
calls/s = min(in flight / (latency + CPU), the Lambdas' CPU, Stripe's 1,000/s); the meter events a
fleet makes per hour and how long an hour's take to send; where the v2 meter event stream would pay.

Usage: python -m bench.send [--rows N] [--latency-ms MS]  (JSON on stdout, a table on stderr)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import stripe

from chalicelib.adapters.clock import FixedClock
from chalicelib.adapters.memory.queue import MemoryQueue
from chalicelib.adapters.memory.store import MemoryStore
from chalicelib.adapters.stripe_gateway import StripeClientGateway
from chalicelib.core.meter_events import MeterEvent, Outcome, SendResult
from chalicelib.core.orgs import Org
from chalicelib.core.outbox import QUEUE_SHARDS, OutboxRow
from chalicelib.services.send_fanout import enqueue_sends, on_send_messages
from chalicelib.settings import load_settings
from chalicelib.stripe_ports import MeterEventGateway

T0 = 1_795_564_800
H = 3600
NOW = T0 + 2 * H
STRIPE_LIVE_CALLS_PER_S = 1000  # v1 meter events, live mode (Stripe's rate limits)
V2_REQUESTS_PER_S, V2_EVENTS_PER_REQUEST = 10_000, 100  # the v2 meter event stream
LATENCY_S = 0.25  # assumed: one meter-event call from us-east-1 (docs/capacity.md's assumption)
LAMBDA_VCPU_AT_512MB = 512 / 1769  # Lambda gives a full vCPU at 1,769 MB, in proportion below
THREADS = 10  # customers one invocation serves at once (SEND_WORKER_THREADS; a FIFO batch holds <= 10)
CONCURRENCY = 20  # the send worker's maximum_concurrency (app.py)
GOAL_SANDBOXES = 600_000  # 30,000 ticks/s at a tick per 20 s
METERS_PER_ORG = 2
TARGET_S = 1800  # an hour bucket billed within 30 minutes of closing
GSI_PARTITION_WU = 1000  # per partition of the outbox's `queue` index; a state has QUEUE_SHARDS of them


class InstantStripe(MeterEventGateway):
    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s, self.calls = latency_s, 0

    def send_meter_event(self, event: MeterEvent) -> SendResult:
        self.calls += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        return SendResult(Outcome.SENT)


class CannedHttp(stripe.HTTPClient):
    """stripe-python's HTTP client with the network taken out: every POST answers a meter event."""

    name = "canned"
    body = json.dumps({"object": "billing.meter_event", "created": NOW, "event_name": "m", "identifier": "x",
                       "livemode": False, "payload": {"stripe_customer_id": "cus_x", "value": "1"},
                       "timestamp": NOW})

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                *, _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        return self.body, 200, {"request-id": "req_bench"}

    def close(self) -> None:
        return None


def fleet(rows: int, per_customer: int) -> MemoryStore:
    store = MemoryStore()
    customers = max(1, rows // per_customer)
    outbox = []
    for c in range(customers):
        org = f"org-{c:06d}"
        store.put_org(Org(org, plan="pro", stripe_customer_id=f"cus_{c:06d}"))
        for n in range(per_customer):
            b, meter = T0 + (n // 2) * H, f"meter_{n % 2}"
            outbox.append(OutboxRow(f"{org}:{b}:{meter}", org, b, b + H, meter, Decimal("1.25"), "first", "pending"))
    store.create_outbox_rows(outbox)
    return store


def measure_service(rows: int) -> dict[str, Any]:
    store = fleet(rows, per_customer=4)
    settings = load_settings({"SHADOW": "false", "SEND_WORKER_THREADS": "1", "STRIPE_API_KEY": "sk_test_x"})
    queue = MemoryQueue(lambda: NOW, visibility=600)
    c0 = time.process_time()
    enqueued = enqueue_sends(store, queue, settings, NOW, "bench")
    c1 = time.process_time()
    gateway = InstantStripe()
    while batch := queue.receive(10):
        done = on_send_messages(store, gateway, settings, FixedClock(NOW), batch, "bench")
        queue.delete([r for r, _ in batch if r not in done.failed])
    c2 = time.process_time()
    assert gateway.calls == rows == enqueued["rows"] and store.outbox_queue("pending") == []
    return {"rows": rows, "tasks": enqueued["tasks"], "coordinator_us_per_row": round((c1 - c0) / rows * 1e6, 1),
            "worker_us_per_row": round((c2 - c1) / rows * 1e6, 1)}


def measure_stripe_python(calls: int) -> float:
    client = stripe.StripeClient("sk_test_bench", http_client=CannedHttp(), max_network_retries=0)
    gateway = StripeClientGateway(client)
    c0 = time.process_time()
    for i in range(calls):
        result = gateway.send_meter_event(MeterEvent("m", f"id-{i}", "cus_x", "1.25", NOW))
        assert result.outcome is Outcome.SENT
    return round((time.process_time() - c0) / calls * 1e6, 1)


def measure_overlap(latency_ms: float, rows: int = 400) -> dict[str, Any]:
    store = fleet(rows, per_customer=rows // THREADS)
    settings = load_settings({"SHADOW": "false", "SEND_WORKER_THREADS": str(THREADS), "SEND_TASK_ROWS": "100",
                              "STRIPE_API_KEY": "sk_test_x"})
    queue = MemoryQueue(lambda: NOW, visibility=600)
    enqueue_sends(store, queue, settings, NOW, "bench")
    gateway = InstantStripe(latency_ms / 1000)
    batch = queue.receive(10)
    t0 = time.monotonic()
    done = on_send_messages(store, gateway, settings, FixedClock(NOW), batch, "bench")
    wall = time.monotonic() - t0
    assert not done.failed and gateway.calls == rows
    return {"latency_ms": latency_ms, "customers": THREADS, "calls": rows, "calls_per_s": round(rows / wall, 1),
            "model_calls_per_s": round(THREADS / (latency_ms / 1000), 1)}


def calls_per_s(concurrency: int, cpu_s: float, latency_s: float = LATENCY_S) -> dict[str, Any]:
    in_flight = concurrency * THREADS
    by_latency = in_flight / (latency_s + cpu_s)
    by_cpu = concurrency * LAMBDA_VCPU_AT_512MB / cpu_s
    rate = min(by_latency, by_cpu, STRIPE_LIVE_CALLS_PER_S)
    binds = ("Stripe's 1,000/s" if rate == STRIPE_LIVE_CALLS_PER_S else
             "latency (in flight)" if rate == by_latency else "Lambda CPU")
    return {"concurrency": concurrency, "in_flight": in_flight, "by_latency": round(by_latency),
            "by_cpu": round(by_cpu), "calls_per_s": round(rate), "binds": binds}


def demand(sandboxes_per_org: int, rate: float) -> dict[str, Any]:
    orgs = GOAL_SANDBOXES // sandboxes_per_org
    events = orgs * METERS_PER_ORG
    # Each row goes into a `pending#k` partition of the queue index and out again: 2 write units there.
    send_s = events / min(rate, QUEUE_SHARDS * GSI_PARTITION_WU / 2)
    return {"sandboxes_per_org": sandboxes_per_org, "orgs": orgs, "events_per_hour": events,
            "avg_calls_per_s": round(events / 3600, 1), "send_minutes": round(send_s / 60, 1),
            "within_30_min": send_s <= TARGET_S, "v2_needed": events / TARGET_S > STRIPE_LIVE_CALLS_PER_S}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    service = measure_service(args.rows)
    stripe_us = measure_stripe_python(min(args.rows, 5_000))
    cpu_s = (service["worker_us_per_row"] + stripe_us) / 1e6
    model = [calls_per_s(c, cpu_s) for c in (5, 10, 13, 20, 25, 50)]
    chosen = next(m for m in model if m["concurrency"] == CONCURRENCY)
    out: dict[str, Any] = {
        "measured": service | {"stripe_python_us_per_call": stripe_us,
                               "cpu_us_per_call": round(cpu_s * 1e6, 1),
                               "overlap": measure_overlap(args.latency_ms)},
        "assumed": {"latency_s": LATENCY_S, "lambda_vcpu_at_512mb": round(LAMBDA_VCPU_AT_512MB, 3),
                    "threads_per_invocation": THREADS},
        "limits": {"stripe_v1_calls_per_s": STRIPE_LIVE_CALLS_PER_S,
                   "stripe_v2_events_per_s": V2_REQUESTS_PER_S * V2_EVENTS_PER_REQUEST,
                   "queue_index_partition_wu_per_s": GSI_PARTITION_WU, "queue_index_shards": QUEUE_SHARDS,
                   "rows_per_s_by_queue_index": QUEUE_SHARDS * GSI_PARTITION_WU // 2},
        "model": model,
        "deployed": chosen,
        "goal": [demand(n, chosen["calls_per_s"]) for n in (1, 2, 5, 10, 30)],
        # v1 stops being enough when an hour's events cannot go in 30 minutes at Stripe's 1,000 calls/s.
        "v2_pays_above_events_per_hour": STRIPE_LIVE_CALLS_PER_S * TARGET_S,
    }
    print(json.dumps(out, indent=2))
    m = out["measured"]
    print(f"CPU per call: edge {m['worker_us_per_row']} us + stripe-python {stripe_us} us = "
          f"{m['cpu_us_per_call']} us; coordinator {m['coordinator_us_per_row']} us per row; one invocation "
          f"over {THREADS} customers at {args.latency_ms:.0f} ms: {m['overlap']['calls_per_s']} calls/s "
          f"(model {m['overlap']['model_calls_per_s']})", file=sys.stderr)
    print(f"{'concurrency':>11} {'in flight':>9} {'latency':>8} {'cpu':>8} {'calls/s':>8}  binds", file=sys.stderr)
    for r in model:
        print(f"{r['concurrency']:>11} {r['in_flight']:>9} {r['by_latency']:>8} {r['by_cpu']:>8} "
              f"{r['calls_per_s']:>8}  {r['binds']}", file=sys.stderr)
    print(f"{'sb/org':>6} {'orgs':>8} {'events/h':>9} {'avg/s':>6} {'send min':>8}  30 min  v2", file=sys.stderr)
    for g in out["goal"]:
        print(f"{g['sandboxes_per_org']:>6} {g['orgs']:>8} {g['events_per_hour']:>9} {g['avg_calls_per_s']:>6} "
              f"{g['send_minutes']:>8}  {'yes' if g['within_30_min'] else 'NO':>6}  "
              f"{'yes' if g['v2_needed'] else 'no'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
