"""The forwarder: spooled envelopes to the edge's POST /ingest, deleted only after a 202.

What the seed's forwarder dropped (any 4xx, a 413, retries exhausted), this one
keeps: 413 splits the batch, 5xx/429/network/timeouts (and answers that are not HTTP, alarmed) retry with capped
exponential backoff and jitter until delivered, 401 retries and alarms (clock
skew, a rotated secret), and 400 moves the batch to ``spool_aside`` with the
edge's reason and alarms. A 400 is bisected like a 413, so only the envelopes
the edge refuses go aside. One process sends from a spool at a time: each
request is made under a lease in the store, renewed before every POST. The
edge dedupes by envelope id, so a batch re-sent after a crash between the 202
and the delete is counted once.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from cellkit.core.backoff import delay
from cellkit.ports import CellStore, Clock, EdgeApi, HttpResponse, MalformedResponse, SpoolItem, TransportError

INGEST_PATH = "/ingest"
# The edge's MAX_BODY_BYTES and MAX_BATCH_ENVELOPES: staying under them avoids needless 413s.
MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
LEASE = "forwarder"
# A Retry-After is a floor (CONTRACT 2); beyond a day it is taken as a day (an edge's typo must not park
# the spool for a year, nor overflow the wait).
MAX_RETRY_AFTER_S = 86_400.0


def batch_body(items: Sequence[SpoolItem]) -> bytes:
    """The stored JSON texts joined as an array: no re-serialisation, the bytes signed are the bytes stored."""
    # surrogatepass: a spooled text with a lone surrogate (possible in a store that does not check
    # UTF-8) must not crash every pump forever; its bytes are invalid UTF-8, the edge answers 400 and
    # the batch is set aside with the reason (found by tests/fuzz/test_fuzz_cellkit.py).
    return ("[" + ",".join(i.body for i in items) + "]").encode("utf-8", errors="surrogatepass")


def fitting(items: Sequence[SpoolItem], max_bytes: int) -> list[SpoolItem]:
    """The longest prefix whose body fits ``max_bytes`` (at least one item)."""
    size, out = 2, list[SpoolItem]()
    for item in items:
        size += len(item.body) + 1
        if out and size > max_bytes:
            break
        out.append(item)
    return out


@dataclass
class ForwarderStats:
    delivered: int = 0
    posts: int = 0
    retries: int = 0
    set_aside: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class Forwarder:
    def __init__(
        self,
        store: CellStore,
        edge: EdgeApi,
        clock: Clock,
        sleep: Callable[[float], None],
        log: logging.Logger,
        rng: random.Random | None = None,
        batch: int = MAX_BATCH,
        max_body: int = MAX_BODY_BYTES,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        stop: threading.Event | None = None,
        holder: str | None = None,
        holder_dead: Callable[[str], bool] = lambda holder: False,
    ) -> None:
        self.store, self.edge, self.clock, self.sleep, self.log = store, edge, clock, sleep, log
        # Set at shutdown: no new request starts once it is (a sleep on it returns at once, so every loop
        # here must check it, or a failing edge is hammered as fast as it answers).
        self.stop = stop or threading.Event()
        self.rng = rng or random.Random()
        self.batch, self.max_body = batch, max_body
        self.base, self.cap = backoff_base, backoff_cap
        self.attempt = 0
        self.stats = ForwarderStats()
        # The lease outlives the longest request (urllib's timeout is per socket operation; three of them),
        # so a holder's request always ends before another process can take the spool over.
        self.holder = holder or f"fwd-{uuid.uuid4().hex[:12]}"
        self.lease_us = int(max(30.0, 3 * edge.timeout) * 1_000_000)
        self.holding: bool | None = None
        # Whether a lease's holder is known dead (a crashed process on this host): a restart then takes the
        # spool over at once instead of waiting out the lease.
        self.holder_dead = holder_dead

    def _hold(self) -> bool:
        """Take or renew the spool's lease; False while another process holds it (this one stands by)."""
        now = self.clock.now_us()
        held = self.store.lease_acquire(LEASE, self.holder, now, self.lease_us)
        if not held:
            current = self.store.lease_holder(LEASE)
            if current is not None and self.holder_dead(current):
                held = self.store.lease_acquire(LEASE, self.holder, now, self.lease_us, from_holder=current)
        if held != self.holding:
            self.log.info("forward_lease_taken" if held else "forward_lease_standby",
                          extra={"cell_id": self.edge.cell_id, "holder": self.holder})
        self.holding = held
        return held

    def release(self) -> None:
        """At a clean shutdown: another process may take the spool over at once."""
        if self.holding:
            self.store.lease_release(LEASE, self.holder)
            self.holding = False

    def pump(self) -> int:
        """Send the head of the spool once; returns envelopes delivered (0 when idle, stopping or after a failure)."""
        if self.stop.is_set() or not self._hold():
            return 0
        items = fitting(self.store.spool_head(self.batch), self.max_body)
        return self._send(items) if items else 0

    def drain(self, max_posts: int = 1_000_000) -> int:
        """Pump until the spool is empty (retrying as long as it takes, up to ``max_posts`` requests)."""
        total = 0
        while not self.stop.is_set() and self.store.spool_depth() and self.stats.posts < max_posts:
            total += self.pump()
            if not self.holding:
                break  # another process sends this spool; try again at the next idle tick
        return total

    def _send(self, items: Sequence[SpoolItem]) -> int:
        if self.stats.posts and not self._hold():  # renewed before every POST (a split makes several)
            return 0
        ids = [i.id for i in items]
        self.stats.posts += 1
        try:
            resp = self.edge.send_body("POST", INGEST_PATH, batch_body(items))
        except TransportError as exc:
            # A malformed answer (a truncated body, a garbage status line) is a broken proxy or edge, not a
            # passing outage: the same backoff, and an alarm for a person.
            self._retry(None, len(items), str(exc), alarm=isinstance(exc, MalformedResponse))
            return 0
        self.stats.statuses[resp.status] = self.stats.statuses.get(resp.status, 0) + 1
        if resp.status == 202:
            self.store.spool_delete(ids)
            self.attempt = 0
            self.stats.delivered += len(ids)
            return len(ids)
        if resp.status in (400, 413):
            # 413: too large; 400: something in the batch is refused. Either way, halve until the envelope
            # at fault stands alone, so only it goes aside and every good one is delivered.
            return self._split(items, resp)
        self._retry(resp, len(items), resp.body[:300].decode(errors="replace"))
        return 0

    def _split(self, items: Sequence[SpoolItem], resp: HttpResponse) -> int:
        if len(items) == 1:
            if resp.status == 413:
                resp = HttpResponse(413, b"single envelope larger than the edge accepts: " + resp.body, {})
            self._set_aside([items[0].id], resp)
            return 0
        half = len(items) // 2
        sent = self._send(items[:half])
        # Keep spool order: the second half goes only once the first is through (and never once stopping).
        return sent + self._send(items[half:]) if sent == half and not self.stop.is_set() else sent

    def _set_aside(self, ids: list[str], resp: HttpResponse) -> None:
        reason = f"{resp.status}: {resp.body[:500].decode(errors='replace')}"
        self.store.spool_set_aside(ids, reason, self.clock.now_us() // 1_000_000)
        self.stats.set_aside += len(ids)
        self.log.error("forward_batch_set_aside",
                       extra={"alarm": True, "cell_id": self.edge.cell_id, "status": resp.status,
                              "envelopes": len(ids), "first_id": ids[0], "reason": reason})

    def _retry(self, resp: HttpResponse | None, count: int, detail: str, alarm: bool = False) -> None:
        status = resp.status if resp is not None else None
        wait = delay(self.attempt, self.rng.random(), self.base, self.cap)
        if resp is not None and status in (429, 503):  # the answers whose Retry-After HTTP defines
            wait = max(wait, _retry_after(resp, self.clock.now_us() / 1_000_000))
        self.attempt += 1
        self.stats.retries += 1
        # A 401 (skew, rotated secret) or another unexpected 4xx (a wrong URL) needs a person; 5xx/429 do not.
        alarm = alarm or (status is not None and 400 <= status < 500 and status != 429)
        self.log.log(logging.ERROR if alarm else logging.WARNING, "forward_retry",
                     extra={"alarm": alarm, "cell_id": self.edge.cell_id, "status": status,
                            "envelopes": count, "attempt": self.attempt, "wait_s": round(wait, 3),
                            "detail": detail[:300]})
        self.sleep(wait)


def _retry_after(resp: HttpResponse, now_s: float) -> float:
    """The answer's Retry-After in seconds (delta-seconds or an HTTP-date), 0 when absent or unreadable."""
    for key, value in resp.headers.items():
        if key.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                try:
                    seconds = parsedate_to_datetime(value).timestamp() - now_s
                except (TypeError, ValueError, IndexError):
                    return 0.0
            return min(seconds, MAX_RETRY_AFTER_S) if math.isfinite(seconds) and seconds > 0 else 0.0
    return 0.0
