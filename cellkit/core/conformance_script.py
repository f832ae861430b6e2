"""The conformance edge's memory and its scripted answers (docs/protocol.md, "Answers").

`Observer.ingest` takes one POST /ingest as received and returns the answer to give; every rule it
finds broken is kept once as a `Violation` (rule, one-line detail). The answers follow `SCRIPT`: one
202, then 503, 413 (to a batch of two or more), 401 and 400, each watched on the next request:

- after 503 or 401 the same envelopes must come again first, in order, after a back-off;
- after 413 the first half must come alone (the batch split in two, in order);
- after 400 the batch must not come again whole: it is set aside, or halved (the first half alone, refused
  again down to one envelope, which goes aside); what went aside never comes again, and later envelopes
  must still flow;
- after 202 its envelopes must never come again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cellkit.core.conformance import (
    MAX_BATCH_ENVELOPES,
    MAX_BODY_BYTES,
    MIN_BACKOFF_SECONDS,
    SCRIPT,
    Tiling,
    Violation,
    check_envelope,
    check_signature,
    digest,
    interval_of,
)


@dataclass
class Last:
    status: int
    ids: list[str]
    at: float


@dataclass
class Observer:
    secret: str
    violations: list[Violation] = field(default_factory=list)
    requests: int = 0
    step: int = 0  # the next scripted answer
    last: Last | None = None
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # answered 400: must never come back
    seen: dict[str, str] = field(default_factory=dict)  # id -> digest of the envelope first sent under it
    tiling: Tiling = field(default_factory=Tiling)
    after_400: int = 0  # requests after the 400 went aside: the forwarder kept going
    halving: bool = False  # this request halves the last 400 batch: refuse it too

    def flag(self, found: list[Violation]) -> None:
        for v in found:
            if v not in self.violations:
                self.violations.append(v)

    @property
    def complete(self) -> bool:
        return self.step >= len(SCRIPT) and self.after_400 > 0

    def missing(self) -> list[Violation]:
        if self.complete:
            return []
        seen = ", ".join(str(s) for s in SCRIPT[:self.step]) or "none"
        return [Violation("incomplete", f"{self.requests} ingest request(s); scripted answers given: {seen}; the "
                                        "forwarder must keep sending so each answer's handling can be observed")]

    def ingest(self, headers: Mapping[str, str], body: bytes, now: int, mono: float) -> int:
        self.requests += 1
        self.flag(check_signature(headers, body, self.secret, now))
        cell_id = headers.get("x-cell-id", "")
        if not cell_id:
            self.flag([Violation("signature", "POST /ingest without X-Cell-Id")])
        try:
            batch = json.loads(body, parse_float=Decimal)
        except ValueError:
            self.flag([Violation("envelope", "the body is not JSON (a JSON array of envelopes)")])
            return 400
        if not isinstance(batch, list):
            self.flag([Violation("envelope", "the body is not a JSON array of envelopes")])
            return 400
        if len(body) > MAX_BODY_BYTES or len(batch) > MAX_BATCH_ENVELOPES:
            self.flag([Violation("batch-limit", f"a batch of {len(batch)} envelopes, {len(body)} bytes: at most "
                                                f"{MAX_BATCH_ENVELOPES} and {MAX_BODY_BYTES} bytes")])
        ids = [str(e.get("id")) if isinstance(e, dict) else "" for e in batch]
        self.check_answer_handling(ids, mono)
        for env in batch:
            self.check_one(env, cell_id)
        return self.answer(ids, mono)

    def check_one(self, env: Any, cell_id: str) -> None:
        found = check_envelope(env, cell_id)
        self.flag(found)
        if found or not isinstance(env, dict):
            return
        key, content = env["id"], digest(env)
        if key in self.seen:
            if self.seen[key] != content:
                self.flag([Violation("id", f"{key[:80]}: one id sent for two different envelopes (ids must be "
                                           "deterministic: the same tick, the same id)")])
            return
        self.seen[key] = content
        interval = interval_of(env["payload"])
        if interval is not None:
            self.flag(self.tiling.add(env, interval))

    def check_answer_handling(self, ids: list[str], mono: float) -> None:
        if self.refused & set(ids):
            self.flag([Violation("answer-400", "envelopes answered 400 came again: a 400 batch is set aside, "
                                               "never re-sent")])
        if self.accepted & set(ids):
            self.flag([Violation("answer-202", "envelopes answered 202 came again: delete exactly what was "
                                               "accepted")])
        last = self.last
        if last is None:
            return
        if last.status in (503, 401):
            if ids[:len(last.ids)] != last.ids:
                self.flag([Violation(f"answer-{last.status}", "the next request does not re-send the same "
                                                             "envelopes first, in order (the spool keeps them)")])
            elif mono - last.at < MIN_BACKOFF_SECONDS:
                self.flag([Violation(f"answer-{last.status}", f"re-sent after {mono - last.at:.3f} s: back off "
                                                             "(exponential, with jitter)")])
        if last.status == 413 and not (0 < len(ids) < len(last.ids) and ids == last.ids[:len(ids)]):
            self.flag([Violation("answer-413", f"a 413 batch of {len(last.ids)} was not split: the next request "
                                               "must be its first half")])
        if last.status == 400:
            self.after_refused(last.ids, ids)

    def after_refused(self, refused: list[str], ids: list[str]) -> None:
        self.halving = 0 < len(ids) < len(refused) and ids == refused[:len(ids)]
        if self.halving:
            return
        if set(ids) & set(refused):
            self.flag([Violation("answer-400", f"a batch of {len(refused)} answered 400 came again whole: set it "
                                               "aside, or halve it until the envelope at fault stands alone")])
            return
        self.refused |= set(refused)  # set aside: it must never come back
        self.after_400 += 1

    def answer(self, ids: list[str], mono: float) -> int:
        status = SCRIPT[self.step] if self.step < len(SCRIPT) else 202
        if self.halving:
            status = 400  # keep refusing down the first half
        elif status == 413 and len(ids) < 2:
            status = 202  # a split needs two; wait for a bigger batch
        elif self.step < len(SCRIPT):
            self.step += 1
        if status == 202:
            self.accepted |= set(ids)
        self.last = Last(status, ids, mono)
        return status
