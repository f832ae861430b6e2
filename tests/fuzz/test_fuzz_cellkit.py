"""The cell kit's own inputs under generated garbage (issue 13): a forwarder fed garbage by its
spool and talking to an edge that answers nonsense, and the cutover CLI's arguments.

Forwarder properties, after every single pump: it never raises; every envelope is in exactly one
of spool, aside (with the edge's reason, after a 400 or an unsplittable 413) or delivered (in a
batch the edge answered 202); every wait is finite and within the backoff cap. Once the edge
recovers, the spool drains completely. CLI: whatever the arguments, an exit code of the
documented set, a message for a usage error (2), never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellkit.adapters.clock import ManualClock
from cellkit.adapters.http import EdgeClient
from cellkit.adapters.memory import MemoryStore
from cellkit.ports import HttpResponse, SpoolItem, TransportError
from cellkit.services.forwarder import MAX_RETRY_AFTER_S, Forwarder
from chalicelib.core.stage_config import with_flags
from tests.conftest import PREFIX
from tests.fuzz.conftest import answered, fuzz, nasty_text, ran

ROOT = Path(__file__).resolve().parents[2]
CAP = 60.0
SOAK = 10_000
MARK = "\u241e"  # a separator no generated text contains: each body ends with its own unique tag


# --- the forwarder ------------------------------------------------------------------------------

class NonsenseEdge:
    """An HttpTransport that answers from a script, then (when the script runs out) 202 to everything."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.accepted: set[str] = set()  # tags of the envelopes in batches answered 202

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> HttpResponse:
        answer = self.script.pop(0) if self.script else ("status", 202, b"{}", {})
        if answer[0] == "transport":  # refused, reset, or slower than the timeout
            raise TransportError(answer[1])
        _, status, payload, extra = answer
        if status == 202:
            self.accepted |= set(tags(body or b""))
        return HttpResponse(status, payload, extra)


def tags(body: bytes) -> list[str]:
    text = body.decode("utf-8", errors="surrogatepass")
    # Each body ends with MARK + its number; a "," or the closing "]" follows.
    return [re.match(r"[0-9]+", part).group(0) for part in text.split(MARK)[1:]]  # type: ignore[union-attr]


retry_after = st.one_of(st.sampled_from(["1", "0", "-5", "abc", "nan", "inf", "-inf", "1e400", "", "3600",
                                         "Wed, 21 Oct 2015 07:28:00 GMT"]), nasty_text)
statuses = st.one_of(st.sampled_from([200, 201, 202, 204, 301, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502,
                                      503, 504]), st.integers(100, 599))
payloads = st.one_of(st.binary(max_size=300), st.just(b"<html>502 Bad Gateway</html>"), st.just(b'{"error": 1}'),
                     st.integers(100_000, 3_000_000).map(lambda n: b"x" * n))
answers = st.one_of(
    st.tuples(st.just("status"), statuses, payloads,
              st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X"]), retry_after,
                              max_size=2)),
    st.tuples(st.just("transport"), st.sampled_from(["timed out", "connection reset", "refused"])),
)
# Spool bodies as a broken or hostile cell could have written them: not JSON, huge, odd text.
garbage = st.one_of(st.text(max_size=80), st.sampled_from(['{"id":', "]", "[", "null", "\u0000", "\ud800"]),
                    st.integers(1, 1_500_000).map(lambda n: "y" * n), st.just(json.dumps({"id": "ok", "type": "x"})))


@st.composite
def spools(draw: Any) -> list[SpoolItem]:
    bodies = draw(st.lists(garbage, min_size=1, max_size=30))
    ids = draw(st.lists(st.text(min_size=1, max_size=10), min_size=len(bodies), max_size=len(bodies)))
    return [SpoolItem(f"{i}-{n}", f"{b}{MARK}{n}") for n, (i, b) in enumerate(zip(ids, bodies, strict=True))]


def snapshot(store: MemoryStore) -> tuple[set[str], dict[str, str]]:
    spool = {item.body.rsplit(MARK, 1)[1] for item in store.spool_head(10**6)}
    aside = {a.body.rsplit(MARK, 1)[1]: a.reason for a in store.aside()}
    return spool, aside


@given(items=spools(), script=st.lists(answers, max_size=25), batch=st.integers(1, 40),
       max_body=st.sampled_from([64, 1000, 1_000_000]), seed=st.integers(0, 2**32))
@fuzz(200, SOAK)
def test_forwarder_never_crashes_never_loses(items: list[SpoolItem], script: list[Any], batch: int, max_body: int,
                                             seed: int) -> None:
    ran("cellkit forwarder")
    store, edge, sleeps = MemoryStore(), NonsenseEdge(script), list[float]()
    store.spool_put(items)
    clock = ManualClock(1_795_564_800_000_000)
    client = EdgeClient("http://edge.invalid", "s" * 32, "cell-a", edge, clock)
    fwd = Forwarder(store, client, clock, sleeps.append, logging.getLogger("fuzz.forwarder"), random.Random(seed),
                    batch=batch, max_body=max_body)
    everything = {str(n) for n in range(len(items))}
    for _ in range(len(script) + 2 * len(items) + 5):
        before_aside = snapshot(store)[1]
        fwd.pump()
        spool, aside = snapshot(store)
        assert spool | set(aside) | edge.accepted == everything  # nothing lost
        assert not (spool & set(aside)) and not (spool & edge.accepted) and not (set(aside) & edge.accepted)
        for tag in set(aside) - set(before_aside):
            assert aside[tag].startswith(("400:", "413:")), aside[tag]  # set aside only on the documented answers
        if not spool:
            break
    # Backoff stays under its cap; only a 429's or 503's Retry-After (a floor) may ask for longer, up to a day.
    floors = any(a[0] == "status" and a[1] in (429, 503) and any(k.lower() == "retry-after" for k in a[3])
                 for a in script)
    assert all(math.isfinite(s) and 0 <= s <= (MAX_RETRY_AFTER_S if floors else CAP) for s in sleeps), sleeps
    answered("cellkit forwarder", (len(store.aside()) and 400) or 202)
    # The edge has recovered (the script is spent): whatever is still spooled goes through.
    fwd.drain(max_posts=fwd.stats.posts + 4 * len(items) + 10)
    spool, aside = snapshot(store)
    assert spool == set() and set(aside) | edge.accepted == everything
    # What was set aside is kept byte for byte, for an operator to look at.
    kept = {a.id: a.body for a in store.aside()}
    assert all(kept[i.id] == i.body for i in items if i.id in kept)


# --- the cutover CLI ----------------------------------------------------------------------------

SUBCOMMANDS = ["preflight", "plan", "drain-check", "arm", "verify", "rollback"]
OPTIONS = ["--stage", "--at", "--json", "--lead", "--soak-hours", "--soak-seconds", "--stale-after", "--run-every",
           "--help", "--at=", "--stage=", "-x", "--", "-"]
values = st.one_of(st.integers(-10**20, 10**20).map(str), st.sampled_from(["dev", "prod", "local", "nope", "1e3",
                                                                            "1795564800", "0", "-1", ""]), nasty_text)


@pytest.fixture
def cli_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", path)
    path.write_text(with_flags(path.read_text(), "dev", {"TABLE_PREFIX": PREFIX}))
    return path


@given(sub=st.one_of(st.sampled_from(SUBCOMMANDS), nasty_text),
       tokens=st.lists(st.one_of(st.sampled_from(OPTIONS), values), max_size=6))
@fuzz(150, SOAK)
def test_cutover_cli_garbage_arguments(run_cli: Callable[..., Any], cli_config: Path, sub: str,
                                       tokens: list[str]) -> None:
    ran("cutover CLI")
    # --config always points at a scratch copy (arm writes flags); garbage may not redirect it.
    tokens = [t for t in tokens if not t.startswith("--c")]
    if any("\ud800" <= c <= "\udfff" for c in sub + "".join(tokens)):
        return  # a process's argv cannot carry lone surrogates
    args = ["cutover", sub, "--config", str(cli_config), *tokens]
    result = run_cli(args)
    answered("cutover CLI", result.exit_code)
    assert result.exit_code in (0, 1, 2, 3), (args, result.exit_code, result.output[-500:])
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "error" in result.output.lower() or "usage" in result.output.lower(), (args, result.output)
